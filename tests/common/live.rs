//! A tool left running: its output collected as it arrives, its stdin
//! written when the test likes, and killed if the test panics.

use std::io::{Read, Write};
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use super::{Output, describe, spawn};

/// A running tool whose stdout and stderr are collected as they arrive,
/// and whose stdin the test writes to when it likes.
pub struct Live {
    pub child: Child,
    pub line: String,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Live {
    pub fn start(cmd: &mut Command) -> Live {
        let line = describe(cmd);
        let mut child = spawn(cmd);
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for (pipe, sink) in [
            (
                child
                    .stdout
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                stdout.clone(),
            ),
            (
                child
                    .stderr
                    .take()
                    .map(|p| Box::new(p) as Box<dyn Read + Send>),
                stderr.clone(),
            ),
        ] {
            readers.push(thread::spawn(move || {
                let Some(mut pipe) = pipe else { return };
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            }));
        }
        Live {
            child,
            line,
            stdout,
            stderr,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, data: &[u8]) {
        self.child
            .stdin
            .as_mut()
            .expect("stdin open")
            .write_all(data)
            .expect("write to child");
    }

    pub fn close_stdin(&mut self) {
        self.child.stdin.take();
    }

    pub fn stdout_len(&self) -> usize {
        self.stdout.lock().unwrap().len()
    }

    pub fn stdout_now(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until stdout satisfies `done`, panicking after `limit`.
    pub fn wait_stdout(&self, limit: Duration, what: &str, done: impl Fn(&[u8]) -> bool) {
        let started = Instant::now();
        while !done(&self.stdout.lock().unwrap()) {
            assert!(
                started.elapsed() < limit,
                "{}: {what} did not happen within {limit:?}; stdout so far: {:?}, stderr: {}",
                self.line,
                String::from_utf8_lossy(&self.stdout_now()),
                String::from_utf8_lossy(&self.stderr.lock().unwrap())
            );
            thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the tool with SIGSTOP (Ctrl-Z), so it holds what it holds.
    pub fn stop(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP);
    }

    /// Lets a stopped tool go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT);
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid()).expect("pid"));
        nix::sys::signal::kill(pid, signal)
            .unwrap_or_else(|e| panic!("{signal} to {}: {e}", self.line));
    }

    /// Finishes a tool whose peer died at `since`: it must end within 3 s
    /// of that (a dead peer is noticed promptly, never waited out).
    pub fn finish_promptly(self, since: Instant) -> Output {
        let line = self.line.clone();
        let out = self.finish(Duration::from_secs(10));
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "{line} took {:?}",
            since.elapsed()
        );
        out
    }

    /// Waits for exit within `limit` (killing and panicking after it).
    pub fn finish(mut self, limit: Duration) -> Output {
        self.close_stdin();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if started.elapsed() > limit {
                self.kill();
                panic!("{} did not finish within {limit:?}", self.line);
            }
            thread::sleep(Duration::from_millis(2));
        };
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        Output {
            line: self.line.clone(),
            status,
            stdout: self.stdout_now(),
            stderr: String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned(),
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        // A test that panicked must not leave a tool running.
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}
