//! Running the `writ` command in-process, for the tests of this crate.

// Each test binary uses the helpers it needs.
#![allow(dead_code, reason = "shared by several test binaries")]

use clap::Parser as _;
use writ_testkit::World;

/// `writ ARGS`, run in-process on a thread of its own (`writ::run` starts its own runtime);
/// its result and its output.
pub fn writ(args: &[&str]) -> (anyhow::Result<()>, String) {
    let cli =
        writ::Cli::try_parse_from(std::iter::once("writ").chain(args.iter().copied())).unwrap();
    let mut out = Vec::new();
    let result = std::thread::scope(|scope| scope.spawn(|| writ::run(cli, &mut out)).join());
    (result.unwrap(), String::from_utf8(out).unwrap())
}

/// `writ ARGS --issuer … --key KEY_FILE` against `world`'s issuer; its output, or its
/// error with every cause.
pub fn cli(world: &World, key: &std::path::Path, args: &[&str]) -> Result<String, String> {
    let mut all = args.to_vec();
    all.extend([
        "--issuer",
        &world.issuer_url,
        "--key",
        key.to_str().unwrap(),
    ]);
    match writ(&all) {
        (Ok(()), out) => Ok(out),
        (Err(error), _) => Err(format!("{error:#}")),
    }
}
