//! The sockets of an `AuthServer`: a thread with its own tokio runtime serving UDP and TCP
//! (pipelined: each query on a connection is answered as soon as its behaviour allows).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

use super::Shared;
use super::Transport;
use super::behave::Plan;

/// Handle on the serving thread. Dropping it stops the thread and closes every socket.
pub(crate) struct Runner {
    commands: Option<mpsc::UnboundedSender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

enum Command {
    StopTcp(std::sync::mpsc::Sender<()>),
    StartTcp(
        std::net::TcpListener,
        std::sync::mpsc::Sender<anyhow::Result<()>>,
    ),
}

impl Runner {
    pub(crate) fn spawn(
        shared: Arc<Shared>,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
    ) -> anyhow::Result<Self> {
        udp.set_nonblocking(true)?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let (started, start_result) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("auth-server".into())
            .spawn(move || {
                // Its own runtime: the server keeps answering while a test blocks its own thread.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => runtime.block_on(run(shared, udp, tcp, receiver, started)),
                    Err(e) => drop(started.send(Err(anyhow::Error::from(e)))),
                }
            })
            .context("spawn the AuthServer thread")?;
        start_result.recv().context("AuthServer thread died")??;
        Ok(Runner {
            commands: Some(commands),
            thread: Some(thread),
        })
    }

    /// Closes the TCP listener and every open connection; returns once they are closed.
    pub(crate) fn stop_tcp(&self) {
        let (ack, done) = std::sync::mpsc::channel();
        if self.send(Command::StopTcp(ack)) {
            // Blocking is fine: the server runs on its own thread and runtime.
            let _ = done.recv();
        }
    }

    /// Serves TCP again on `listener`.
    pub(crate) fn start_tcp(&self, listener: std::net::TcpListener) -> anyhow::Result<()> {
        let (ack, done) = std::sync::mpsc::channel();
        anyhow::ensure!(
            self.send(Command::StartTcp(listener, ack)),
            "AuthServer thread is gone"
        );
        done.recv().context("AuthServer thread is gone")?
    }

    fn send(&self, command: Command) -> bool {
        self.commands
            .as_ref()
            .is_some_and(|c| c.send(command).is_ok())
    }
}

impl Drop for Runner {
    fn drop(&mut self) {
        // Closing the command channel ends `run`; the runtime then drops every task and socket.
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    mut commands: mpsc::UnboundedReceiver<Command>,
    started: std::sync::mpsc::Sender<anyhow::Result<()>>,
) {
    let sockets = UdpSocket::from_std(udp).and_then(|udp| Ok((udp, TcpListener::from_std(tcp)?)));
    let (udp, tcp) = match sockets {
        Ok(sockets) => sockets,
        Err(e) => return drop(started.send(Err(e.into()))),
    };
    let _ = started.send(Ok(()));
    tokio::spawn(serve_udp(Arc::new(udp), shared.clone()));
    let mut tcp = Some(TcpTask::spawn(tcp, shared.clone()));
    while let Some(command) = commands.recv().await {
        match command {
            Command::StopTcp(ack) => {
                if let Some(task) = tcp.take() {
                    task.stop().await;
                }
                let _ = ack.send(());
            }
            Command::StartTcp(listener, ack) => {
                let result = TcpListener::from_std(listener).map_err(anyhow::Error::from);
                let result =
                    result.map(|listener| tcp = Some(TcpTask::spawn(listener, shared.clone())));
                let _ = ack.send(result);
            }
        }
    }
}

async fn serve_udp(socket: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; 65535];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        match shared.handle(&buf[..len], Transport::Udp) {
            Plan::Reply(bytes) => drop(socket.send_to(&bytes, peer).await),
            Plan::Delayed(delay, bytes) => {
                let socket = socket.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = socket.send_to(&bytes, peer).await;
                });
            }
            Plan::Ignore | Plan::Reset => {}
        }
    }
}

/// The accept loop, which owns its connections so stopping it closes them all.
struct TcpTask {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl TcpTask {
    fn spawn(listener: TcpListener, shared: Arc<Shared>) -> Self {
        let (stop, stopped) = oneshot::channel();
        TcpTask {
            stop,
            task: tokio::spawn(accept(listener, shared, stopped)),
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stop: oneshot::Receiver<()>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(serve_connection(stream, shared.clone()));
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

enum ConnectionEnd {
    /// The client closed its side or sent a broken frame: answers still queued are sent.
    Closed,
    /// Writing failed.
    Broken,
    /// A [`Behaviour::CloseTcp`](super::Behaviour::CloseTcp) query: reset.
    Reset,
}

async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let end = {
        let (mut reader, mut writer) = stream.split();
        let (answers, mut to_write) = mpsc::unbounded_channel::<Vec<u8>>();
        let write = async {
            while let Some(bytes) = to_write.recv().await {
                if write_frame(&mut writer, &bytes).await.is_err() {
                    break;
                }
            }
        };
        tokio::pin!(write);
        let end = tokio::select! {
            end = read_queries(&mut reader, &shared, answers) => end,
            () = &mut write => ConnectionEnd::Broken,
        };
        if let ConnectionEnd::Closed = end {
            // Flush what is still queued; `answers` is gone, so this ends.
            write.await;
        }
        end
    };
    if let ConnectionEnd::Reset = end {
        // SO_LINGER 0: closing sends RST instead of FIN.
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
}

async fn read_queries(
    reader: &mut (impl AsyncRead + Unpin),
    shared: &Shared,
    answers: mpsc::UnboundedSender<Vec<u8>>,
) -> ConnectionEnd {
    let mut delayed = JoinSet::new();
    while let Some(frame) = read_frame(reader).await {
        match shared.handle(&frame, Transport::Tcp) {
            Plan::Reply(bytes) => drop(answers.send(bytes)),
            Plan::Delayed(delay, bytes) => {
                let answers = answers.clone();
                delayed.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = answers.send(bytes);
                });
            }
            Plan::Ignore => {}
            Plan::Reset => return ConnectionEnd::Reset,
        }
    }
    delayed.join_all().await;
    ConnectionEnd::Closed
}

async fn read_frame(reader: &mut (impl AsyncRead + Unpin)) -> Option<Vec<u8>> {
    let len = reader.read_u16().await.ok()?;
    let mut frame = vec![0; usize::from(len)];
    reader.read_exact(&mut frame).await.ok()?;
    Some(frame)
}

async fn write_frame(writer: &mut (impl AsyncWrite + Unpin), bytes: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(bytes.len() + 2);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(bytes);
    writer.write_all(&frame).await
}
