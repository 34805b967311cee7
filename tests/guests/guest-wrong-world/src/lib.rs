//! A component exporting `zonegate:other@0.1.0`'s world: `init` as in the real interface, but
//! `decide(name: string, qtype: u16) -> bool`. Loading it as a policy must fail cleanly.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({ world: "policy", path: "wit" });

    struct WrongWorld;

    impl Guest for WrongWorld {
        fn init(_settings: String) -> Result<(), String> {
            Ok(())
        }

        fn decide(_name: String, _qtype: u16) -> bool {
            true
        }
    }

    export!(WrongWorld);
}
