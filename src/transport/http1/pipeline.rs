//! HTTP/1.1 pipelining for background sends: many `PUT /message` requests
//! on one connection, written together, their answers read in order.
//!
//! Why: with one request per connection at a time, each message in flight
//! costs a TCP segment each way, and on loopback the kernel work of
//! delivering a segment (and waking the reader) is most of a send's cost.
//! Background sends ([`crate::client::send_async`]) come in bursts: when a batch of
//! answers frees slots, the caller starts as many new sends, and here they
//! leave in one write, are read by the exchange in one read, and (with
//! hyper's `pipeline_flush`, set on our exchange) answered in one write.
//! HTTP/1.1 servers answer pipelined requests in order (RFC 9112 9.3.2);
//! academy-py's aiohttp handles them one after another.
//!
//! Only sends go here: their answers come at once, so no request waits
//! behind a slow one (long-poll receives never share the connection).

use std::collections::VecDeque;
use std::io;
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::transport::http1::answer::{Answer, AnswerReader, Attempt, Failure, Reach, Step};
use crate::transport::http1::connect::Connector;

/// Bytes asked of the socket per read.
const READ_SIZE: usize = 16 * 1024;

/// One request handed to the pipeline's task.
struct Job {
    request: Vec<u8>,
    deadline: Option<Instant>,
    answer: oneshot::Sender<Result<Answer, Attempt>>,
}

/// The handle of a pipelined connection, driven by a task on the runtime
/// that made it (which must outlive it: the library's own).
#[derive(Debug)]
pub(crate) struct Pipeline {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Pipeline {
    /// Starts the task that owns the connection (connected on first use,
    /// and again after the server closes it).
    pub fn start(connector: Connector) -> Pipeline {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive(connector, queue));
        Pipeline { jobs }
    }

    /// Whether its task still runs (it ends only if it failed; the pool
    /// then starts another).
    pub fn is_running(&self) -> bool {
        !self.jobs.is_closed()
    }

    /// Sends one rendered request and waits for its answer.
    pub async fn request(
        &self,
        request: Vec<u8>,
        deadline: Option<Instant>,
    ) -> Result<Answer, Attempt> {
        let (answer, answered) = oneshot::channel();
        let job = Job {
            request,
            deadline,
            answer,
        };
        if self.jobs.send(job).is_err() {
            return Err(Attempt::not_sent(gone()));
        }
        answered
            .await
            .unwrap_or_else(|_| Err(Attempt::unknown(gone())))
    }
}

fn gone() -> Failure {
    Failure::Io(io::Error::other("the pipelined connection's task ended"))
}

/// The task: waits for requests, connects, and runs the connection until
/// it ends; then the next request connects again. Ends when the pool is
/// dropped and every request has been answered.
async fn drive(connector: Connector, mut queue: mpsc::UnboundedReceiver<Job>) {
    // Requests a server closed the connection before reading: they go
    // first on the next connection.
    let mut carried: VecDeque<Job> = VecDeque::new();
    loop {
        if carried.is_empty() {
            match queue.recv().await {
                Some(job) => carried.push_back(job),
                None => return,
            }
        }
        let deadline = carried.front().and_then(|job| job.deadline);
        let stream = match connector.connect(deadline).await {
            Ok(stream) => stream,
            Err(f) => {
                for job in carried.drain(..) {
                    let _ = job.answer.send(Err(Attempt::not_sent(f.copy())));
                }
                continue;
            }
        };
        let mut link = Link {
            stream,
            out: Vec::new(),
            queued: 0,
            written: 0,
            buf: Vec::new(),
            reader: AnswerReader::new(),
            waiting: VecDeque::new(),
        };
        for job in carried.drain(..) {
            link.push(job);
        }
        let end = link.run(&mut queue).await;
        carried = link.finish(end);
    }
}

/// Why a connection's run ended.
enum End {
    /// The server closed it, it failed, or it answered what is not HTTP.
    Broken(Failure),
    /// The request at the front timed out.
    TimedOut,
    /// The last answer closed the connection (`connection: close`); the
    /// requests after it were not read by the server.
    Closed,
    /// The pool is gone and nothing is waiting.
    Done,
}

/// A request written (or queued to be), waiting for its answer.
struct Waiting {
    job: Job,
    /// Where its bytes end in the connection's output.
    end: u64,
}

struct Link {
    stream: TcpStream,
    /// Bytes not written yet.
    out: Vec<u8>,
    /// Bytes queued for writing, and written, since the connection began.
    queued: u64,
    written: u64,
    /// Bytes read and not parsed yet.
    buf: Vec<u8>,
    /// The answer being read.
    reader: AnswerReader,
    /// Requests in the order written, waiting for their answers.
    waiting: VecDeque<Waiting>,
}

impl Link {
    fn push(&mut self, job: Job) {
        self.out.extend_from_slice(&job.request);
        self.queued += job.request.len() as u64;
        self.waiting.push_back(Waiting {
            job,
            end: self.queued,
        });
    }

    async fn run(&mut self, queue: &mut mpsc::UnboundedReceiver<Job>) -> End {
        let mut open = true;
        loop {
            if let Err(e) = self.write_some() {
                // The server may have answered before it stopped reading.
                return self.read_some().unwrap_or(End::Broken(Failure::Io(e)));
            }
            if !open && self.waiting.is_empty() {
                return End::Done;
            }
            let deadline = self.waiting.front().and_then(|w| w.job.deadline);
            tokio::select! {
                biased;
                ready = self.stream.readable() => {
                    if let Err(e) = ready {
                        return End::Broken(Failure::Io(e));
                    }
                    if let Some(end) = self.read_some() {
                        return end;
                    }
                }
                job = queue.recv(), if open => match job {
                    None => open = false,
                    Some(job) => {
                        self.push(job);
                        // The other sends of this burst are being started
                        // on this thread: let them queue, then write all.
                        tokio::task::yield_now().await;
                        while let Ok(job) = queue.try_recv() {
                            self.push(job);
                        }
                    }
                },
                ready = self.stream.writable(), if !self.out.is_empty() => {
                    if let Err(e) = ready {
                        return End::Broken(Failure::Io(e));
                    }
                }
                () = sleep_until(deadline), if deadline.is_some() => return End::TimedOut,
            }
        }
    }

    /// Writes what the socket takes now.
    fn write_some(&mut self) -> io::Result<()> {
        while !self.out.is_empty() {
            match self.stream.try_write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads what there is and hands out the answers it completes.
    /// `Some`: the connection ended.
    fn read_some(&mut self) -> Option<End> {
        loop {
            let start = self.buf.len();
            self.buf.resize(start + self.reader.want(READ_SIZE), 0);
            let read = self.stream.try_read(&mut self.buf[start..]);
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.buf.truncate(start);
                    return None;
                }
                Err(e) => {
                    self.buf.truncate(start);
                    return Some(End::Broken(Failure::Io(e)));
                }
            };
            self.buf.truncate(start + n);
            let eof = n == 0;
            if let Some(end) = self.answers(eof) {
                return Some(end);
            }
            if eof {
                return Some(End::Broken(Failure::Io(
                    io::ErrorKind::UnexpectedEof.into(),
                )));
            }
        }
    }

    /// Hands out every complete answer in `buf`, in order.
    fn answers(&mut self, eof: bool) -> Option<End> {
        loop {
            if self.buf.is_empty() && !eof {
                return None;
            }
            if self.waiting.is_empty() {
                return (!self.buf.is_empty()).then(|| {
                    End::Broken(Failure::Protocol(
                        "bytes came that no request asked for".into(),
                    ))
                });
            }
            let (answer, reusable) = match self.reader.read(&mut self.buf, eof) {
                Ok(Step::Done { answer, reusable }) => (answer, reusable),
                Ok(Step::More) => return None,
                Err(f) => return Some(End::Broken(f)),
            };
            if let Some(waiting) = self.waiting.pop_front() {
                let _ = waiting.job.answer.send(Ok(answer));
            }
            if !reusable {
                return Some(End::Closed);
            }
        }
    }

    /// After the connection ended: the requests to send again on a new
    /// one (those a `connection: close` answer left unread, which the
    /// server must not have acted on, RFC 9112 9.6); fails the others,
    /// saying for each whether all of it was written (then the server may
    /// have acted on it, and only the caller knows whether it may go
    /// again).
    fn finish(&mut self, end: End) -> VecDeque<Job> {
        if matches!(end, End::Closed) {
            return self.waiting.drain(..).map(|w| w.job).collect();
        }
        let written = self.written;
        for (i, w) in self.waiting.drain(..).enumerate() {
            let failure = match &end {
                End::Broken(f) => f.copy(),
                End::TimedOut if i == 0 => Failure::Timeout,
                End::TimedOut => Failure::Io(io::Error::other(
                    "the pipelined connection was given up after an earlier request timed out",
                )),
                End::Closed | End::Done => gone(),
            };
            let reach = if written >= w.end {
                Reach::Unknown
            } else {
                Reach::NotSent
            };
            let _ = w.job.answer.send(Err(Attempt { failure, reach }));
        }
        VecDeque::new()
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}
