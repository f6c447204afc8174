//! Connecting to an exchange: every address of its host in turn, each
//! within the connect timeout and all within the request's deadline (an
//! address that does not answer in time is given up for the next one).

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::transport::http1::answer::{remaining, Failure};

/// Where and how to connect to one exchange.
#[derive(Debug, Clone)]
pub(crate) struct Connector {
    /// `host:port` as written in the URL.
    authority: String,
    connect_timeout: Duration,
    /// Addresses to use instead of resolving `authority` (tests).
    fixed: Option<Vec<SocketAddr>>,
}

impl Connector {
    /// A connector to `authority` (`host:port` as written in the URL).
    pub fn new(authority: String, connect_timeout: Duration) -> Connector {
        Connector {
            authority,
            connect_timeout,
            fixed: None,
        }
    }

    fn addresses(&self) -> Result<Vec<SocketAddr>, Failure> {
        if let Some(fixed) = &self.fixed {
            return Ok(fixed.clone());
        }
        Ok(self
            .authority
            .to_socket_addrs()
            .map_err(Failure::Connect)?
            .collect())
    }

    /// The connect timeout, cut to what is left before `deadline`.
    fn connect_limit(&self, deadline: Option<Instant>) -> Result<Duration, Failure> {
        match deadline {
            Some(d) => Ok(self.connect_timeout.min(remaining(d)?)),
            None => Ok(self.connect_timeout),
        }
    }

    #[cfg(test)]
    pub(crate) fn with_addresses(addrs: &[SocketAddr], connect_timeout: Duration) -> Connector {
        Connector {
            authority: String::new(),
            connect_timeout,
            fixed: Some(addrs.to_vec()),
        }
    }

    pub(crate) fn connect_blocking(&self, deadline: Option<Instant>) -> Result<TcpStream, Failure> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        for addr in self.addresses()? {
            match TcpStream::connect_timeout(&addr, self.connect_limit(deadline)?) {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(Failure::Connect)?;
                    return Ok(stream);
                }
                Err(e) => last = timed_out_to(addr, e),
            }
        }
        Err(Failure::Connect(last))
    }

    pub(crate) async fn connect(
        &self,
        deadline: Option<Instant>,
    ) -> Result<tokio::net::TcpStream, Failure> {
        let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
        // Names other than literal addresses resolve on a blocking thread.
        let addrs = match self
            .fixed
            .clone()
            .map(Ok)
            .unwrap_or_else(|| self.authority.parse::<SocketAddr>().map(|a| vec![a]))
        {
            Ok(addrs) => addrs,
            Err(_) => tokio::net::lookup_host(&self.authority)
                .await
                .map_err(Failure::Connect)?
                .collect(),
        };
        for addr in addrs {
            let limit = self.connect_limit(deadline)?;
            match tokio::time::timeout(limit, tokio::net::TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    stream.set_nodelay(true).map_err(Failure::Connect)?;
                    return Ok(stream);
                }
                Ok(Err(e)) => last = timed_out_to(addr, e),
                Err(_) => last = timed_out_to(addr, io::ErrorKind::TimedOut.into()),
            }
        }
        Err(Failure::Connect(last))
    }
}

/// A connect error that names the address (a timeout says it timed out).
fn timed_out_to(addr: SocketAddr, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{addr}: {e}"))
}
