pub mod run;
pub mod serve;
