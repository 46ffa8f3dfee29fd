//! A dependency for composition: exports `wasmops-test:greet/greeter`
//! (and `shouter`, whose shape does not fit a `greeter` import). The
//! greeting is the environment's `GREETING` when it has one, which it
//! does only if it inherits the component's configuration.
wit_bindgen::generate!({ path: "../compose-wit", world: "greeter-provider" });

struct Greeter;

impl exports::wasmops_test::greet::greeter::Guest for Greeter {
    fn greet(name: String) -> String {
        let greeting = std::env::var("GREETING").unwrap_or_else(|_| "Hello".to_string());
        format!("{greeting}, {name}, from a composed dependency!")
    }
}

impl exports::wasmops_test::greet::shouter::Guest for Greeter {
    fn shout(name: String, times: u32) -> String {
        name.to_uppercase().repeat(times as usize)
    }
}

export!(Greeter);
