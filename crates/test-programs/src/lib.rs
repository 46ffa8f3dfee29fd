//! Paths of the guest programs built by `build.rs`, one constant each.
//! See `guests/*/src` for what each guest does.
include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));
