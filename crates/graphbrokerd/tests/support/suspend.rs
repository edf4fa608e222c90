//! Moving a running daemon's clocks the way a suspend moves them: the wall and boot clocks jump forward, the
//! monotonic clock stands still (`suspend_clock.c`, loaded with `LD_PRELOAD`).

use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The shim, compiled once per test binary with the system's C compiler.
fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/suspend_clock.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("suspend_clock-{}.so", std::process::id()));
        let status = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&out)
            .arg(&source)
            .arg("-ldl")
            .status()
            .expect("cc (the C compiler Rust links with) builds the suspend shim");
        assert!(status.success(), "cc failed on {}", source.display());
        out
    })
}

/// The clocks of one daemon, moved by the test.
pub struct Suspend {
    file: PathBuf,
    slept: Duration,
}

impl Suspend {
    /// Clocks not moved yet; the offset file lives in `dir`.
    pub fn new(dir: &Path) -> Self {
        let file = dir.join("suspend-offset");
        std::fs::write(&file, 0i64.to_le_bytes()).expect("write the offset file");
        Self { file, slept: Duration::ZERO }
    }

    /// Makes `command` (the daemon) run on these clocks.
    pub fn apply(&self, command: &mut Command) {
        command.env("LD_PRELOAD", shim()).env("GRAPHBROKER_SUSPEND_FILE", &self.file);
    }

    /// The machine sleeps for `by`: from now on the daemon's wall and boot clocks read `by` later.
    pub fn sleep(&mut self, by: Duration) {
        self.slept += by;
        let nanos = i64::try_from(self.slept.as_nanos()).expect("a sleep that fits in i64 nanoseconds");
        // Rewritten in place, never truncated: the daemon has the file mapped.
        let file = std::fs::OpenOptions::new().write(true).open(&self.file).expect("open the offset file");
        file.write_all_at(&nanos.to_le_bytes(), 0).expect("write the offset");
    }

    /// How long the machine has slept so far.
    pub fn slept(&self) -> Duration {
        self.slept
    }
}
