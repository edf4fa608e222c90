//! The floor: a request/response echo over a Unix socket sized like a token exchange, bare (a blocking thread
//! per connection on each side, optionally pinned to one CPU) and through Tokio.

use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream as BlockingUnixStream;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

use crate::measure::{CpuClock, Recorder, RoundTrip, Sample, Window};

/// Answers every `request_bytes` read with `response_bytes`, per connection, until the runtime is dropped.
pub(crate) async fn echo_server(listener: UnixListener, request_bytes: usize, response_bytes: usize) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut request = vec![0u8; request_bytes];
            let response = vec![b'x'; response_bytes];
            while stream.read_exact(&mut request).await.is_ok() {
                if stream.write_all(&response).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// The bare floor: per connection a socket pair, a blocking thread answering on one end and a blocking thread
/// asking on the other, timed like [`drive`]. With `pin`, every thread runs on that one CPU.
pub(crate) fn drive_bare(
    concurrency: usize,
    request_bytes: usize,
    response_bytes: usize,
    measure: Duration,
    pin: Option<usize>,
) -> anyhow::Result<Sample> {
    let pairs = (0..concurrency).map(|_| BlockingUnixStream::pair()).collect::<Result<Vec<_>, _>>()?;
    let window = Window::after_warmup(measure);
    let pin_here = move || -> Result<(), String> {
        let Some(cpu) = pin else { return Ok(()) };
        let mut set = CpuSet::new();
        set.set(cpu).map_err(|e| e.to_string())?;
        sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = pairs
            .into_iter()
            .map(|(mut client, mut server)| {
                scope.spawn(move || {
                    let mut request = vec![0u8; request_bytes];
                    let response = vec![b'x'; response_bytes];
                    if pin_here().is_ok() {
                        while server.read_exact(&mut request).is_ok() && server.write_all(&response).is_ok() {}
                    }
                });
                scope.spawn(move || {
                    let mut recorder = Recorder::new(window);
                    if let Err(error) = pin_here() {
                        recorder.record(Instant::now(), Err(error));
                    }
                    let (request, mut response) = (vec![b'g'; request_bytes], vec![0u8; response_bytes]);
                    while let Some(started) = recorder.next() {
                        let outcome = client
                            .write_all(&request)
                            .and_then(|()| client.read_exact(&mut response))
                            .map_err(|e| e.to_string());
                        recorder.record(started, outcome);
                    }
                    // Dropping `client` ends the answering thread.
                    recorder
                })
            })
            .collect();
        std::thread::sleep(window.start.saturating_duration_since(Instant::now()));
        let before = CpuClock::now(None);
        std::thread::sleep(window.end.saturating_duration_since(Instant::now()));
        let cpu = CpuClock::now(None).since(&before, measure);
        let recorders = workers.into_iter().map(|w| w.join().expect("bare echo worker panicked"));
        Ok(Sample::collect(recorders, measure, cpu, 0))
    })
}

/// A persistent connection to the echo server.
pub(crate) struct EchoRoundTrip {
    pub(crate) stream: UnixStream,
    pub(crate) request: Vec<u8>,
    pub(crate) response: Vec<u8>,
}

impl EchoRoundTrip {
    pub(crate) async fn connect(path: &Path, request_bytes: usize, response_bytes: usize) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path).await?;
        Ok(Self { stream, request: vec![b'g'; request_bytes], response: vec![0; response_bytes] })
    }
}

impl RoundTrip for EchoRoundTrip {
    async fn round_trip(&mut self) -> Result<(), String> {
        self.stream.write_all(&self.request).await.map_err(|e| e.to_string())?;
        self.stream.read_exact(&mut self.response).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}
