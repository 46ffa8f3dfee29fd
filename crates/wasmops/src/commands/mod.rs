pub mod hosting;
pub mod run;
pub mod serve;
pub mod up;
