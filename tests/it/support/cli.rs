//! Runs the `cfpurge` binary once, with the emulator's test credentials and
//! nothing of the machine's AWS profile or configuration.

/// `cfpurge ARGS...`: its exit code, stdout and stderr.
pub fn cfpurge(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cfpurge"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .env_remove("CFPURGE_CONFIG")
        .output()
        .expect("run cfpurge");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
