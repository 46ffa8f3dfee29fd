pub mod build;
pub mod doctor;
pub mod hosting;
pub mod inspect;
pub mod new;
pub mod run;
pub mod serve;
pub mod up;
