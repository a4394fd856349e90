//! The runtime API's UNIX socket (HAProxy's `stats socket`).
//!
//! One connection runs one line of commands (separated by `;`) and is closed, as HAProxy's
//! non-interactive mode does, so `echo "show stat" | socat stdio /path` works. `prompt` turns
//! on interactive mode: the connection stays open, each answer is followed by `> `, and `quit`
//! (or 10 idle seconds) ends it.

use std::{future::Future, io, path::Path, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{UnixListener, UnixStream},
};

use crate::runtime::{Effect, Runtime};

/// How long a connection may stay silent (HAProxy's default CLI timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest command line read.
const MAX_LINE: u64 = 64 * 1024;

/// The permission bits of a socket created without a configured mode: only the owner (and
/// root) may connect, whatever the umask.
pub const DEFAULT_MODE: u32 = 0o600;

/// Binds the socket at `path` with [`DEFAULT_MODE`] (see [`bind_with_mode`]).
pub fn bind(path: &Path) -> io::Result<UnixListener> {
    bind_with_mode(path, DEFAULT_MODE)
}

/// Binds the socket at `path` with permission bits `mode`, replacing a stale socket file left by
/// an earlier run, but never a socket another process still serves, nor a file that is not a
/// socket. The mode is set between bind and listen, so no connection is ever accepted under the
/// umask's bits (until listen, a connect is refused). Call inside a Tokio runtime.
pub fn bind_with_mode(path: &Path, mode: u32) -> io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} is in use by another process", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    let ready = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .and_then(|()| socket.listen(1024))
        .and_then(|()| socket.set_nonblocking(true));
    if let Err(err) = ready {
        let _ = std::fs::remove_file(path);
        return Err(err);
    }
    UnixListener::from_std(std::os::unix::net::UnixListener::from(socket))
}

/// Serves runtime commands on `listener` until `shutdown` resolves.
pub async fn serve(listener: UnixListener, runtime: Runtime, shutdown: impl Future<Output = ()>) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "runtime socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let runtime = runtime.clone();
        tokio::spawn(async move {
            if let Err(err) = session(stream, &runtime).await {
                tracing::debug!(error = %err, "runtime socket: connection ended with an error");
            }
        });
    }
}

async fn session(stream: UnixStream, runtime: &Runtime) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read.take(u64::MAX));
    let mut interactive = false;
    loop {
        let mut line = String::new();
        let n = match tokio::time::timeout(IDLE_TIMEOUT, async {
            lines.get_mut().set_limit(MAX_LINE);
            lines.read_line(&mut line).await
        })
        .await
        {
            Ok(read) => read?,
            Err(_) => return Ok(()),
        };
        if n == 0 {
            return Ok(());
        }
        let mut out = String::new();
        let mut quit = false;
        for command in line.trim_end_matches(['\r', '\n']).split(';') {
            let (answer, effect) = runtime.execute(command.trim());
            out.push_str(&answer);
            match effect {
                Effect::None => {}
                Effect::TogglePrompt => interactive = !interactive,
                Effect::Quit => {
                    quit = true;
                    break;
                }
            }
        }
        if interactive && !quit {
            out.push_str("> ");
        }
        write.write_all(out.as_bytes()).await?;
        if quit || !interactive {
            return write.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode_of(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_socket_is_created_0600_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.sock");
        let listener = bind(&path).unwrap();
        assert_eq!(mode_of(&path), 0o600);
        drop(listener);
        // The stale file of the first is replaced, with the mode asked for.
        let _listener = bind_with_mode(&path, 0o660).unwrap();
        assert_eq!(mode_of(&path), 0o660);
        assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    }
}
