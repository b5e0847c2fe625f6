//! Fuzz target `name`: see `stowage_fuzz_bodies` for the input form and what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    (stowage_fuzz_bodies::target("name").body)(data);
});
