//! Configuration: any text as the TOML file, plus up to eight environment
//! overrides, through `Config::from_parts`. Nothing panics; an accepted
//! configuration prints (as `check-config` prints it) to TOML that loads
//! again, with no overrides, to the same configuration.
//!
//! Input: the file's text, then optionally a line `%%env` followed by
//! `NAME=VALUE` lines.

#![no_main]

use std::path::Path;

use cfpurge::commands::check_config::write_effective;
use cfpurge::config::Config;
use cfpurge::decode::Router;
use libfuzzer_sys::fuzz_target;

const ENV_MARKER: &str = "\n%%env\n";
const MAX_OVERRIDES: usize = 8;

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (text, env) = match input.split_once(ENV_MARKER) {
        Some((text, env)) => (text, env),
        None => (&*input, ""),
    };
    let env: Vec<(String, String)> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .take(MAX_OVERRIDES)
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    let Ok(cfg) = Config::from_parts(Some(text), "fuzz.toml", env) else {
        return;
    };
    let _ = Router::new(&cfg);

    let printed = print(&cfg);
    let again = Config::from_parts(Some(&printed), "effective.toml", std::iter::empty())
        .unwrap_or_else(|e| panic!("printed configuration does not load:\n{printed}\n{e}"));
    assert_eq!(
        print(&again),
        printed,
        "configuration changes when printed and loaded"
    );
});

fn print(cfg: &Config) -> String {
    let mut out = Vec::new();
    write_effective(cfg, Path::new("fuzz.toml"), &mut out)
        .unwrap_or_else(|e| panic!("accepted configuration cannot be printed: {e}\n{cfg:?}"));
    String::from_utf8(out).expect("printed configuration is UTF-8")
}
