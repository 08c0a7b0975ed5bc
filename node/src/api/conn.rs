//! An accepted API connection ([`Conn`]): it holds the connection's limit slots until it
//! closes, and gives hyper's own error answers (414 for an over-long URI, 431 for an
//! over-large head) the API's JSON error body instead of an empty one ([`json_error_for`]).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::Metrics;
use super::limit::IpSlot;

/// An accepted connection; closing it frees its slots. Also gives hyper's own error answers
/// the API's JSON error body (see [`json_error_for`]).
pub(super) struct Conn<S = TcpStream> {
    pub(super) io: S,
    pub(super) _permit: Option<OwnedSemaphorePermit>,
    pub(super) _slot: Option<IpSlot>,
    pub(super) metrics: Arc<Metrics>,
    /// A JSON error answer being sent in place of one of hyper's.
    pub(super) replacement: Option<Replacement>,
}

/// The bytes sent instead of one hyper write, and how much of hyper's buffer to report as
/// written once they are all on the socket.
pub(super) struct Replacement {
    bytes: Vec<u8>,
    sent: usize,
    reported: usize,
}

/// hyper's request-head limits (hyper 1.x, `proto/h1/role.rs` and `proto/h1/io.rs`; axum's
/// `serve` keeps hyper's defaults). A URI longer than `MAX_URI_LEN` (`u16::MAX - 1`) is
/// answered 414 (if the head fits in the read buffer); a head that does not fit in the read
/// buffer (`DEFAULT_MAX_BUFFER_SIZE`) or has more than `DEFAULT_MAX_HEADERS` headers, 431.
const HYPER_MAX_URI_BYTES: usize = 65_534;
const HYPER_MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;
const HYPER_MAX_HEADERS: usize = 100;

/// If `buf` is exactly the head of hyper's automatic answer to an unparsable request — status
/// 414 (URI too long) or 431 (request header fields too large), `content-length: 0`, nothing
/// after the head — the same answer with the API's JSON error body: the status line and other
/// headers (`date`) kept, then `content-type: application/json`, `connection: close` (hyper
/// closes the connection after these answers) and the body's `content-length`. `None` for
/// anything else.
fn json_error_for(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 "))?;
    let message = match rest.get(..4)? {
        b"414 " => format!(
            "request line too long: the URI is over the server's limit of \
             {HYPER_MAX_URI_BYTES} bytes; API paths are short"
        ),
        b"431 " => format!(
            "request headers too large (over {HYPER_MAX_HEAD_BYTES} bytes or more than \
             {HYPER_MAX_HEADERS} headers); send fewer or smaller headers"
        ),
        _ => return None,
    };
    let head = buf.strip_suffix(b"\r\n\r\n")?;
    let head = std::str::from_utf8(head).ok()?;
    if head.contains("\r\n\r\n") {
        return None;
    }
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut empty_body = false;
    let mut kept = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") {
            if value.trim() != "0" {
                return None;
            }
            empty_body = true;
        } else if !name.eq_ignore_ascii_case("connection")
            && !name.eq_ignore_ascii_case("content-type")
        {
            kept.push(line);
        }
    }
    if !empty_body {
        return None;
    }
    let body = serde_json::json!({ "error": message }).to_string();
    let mut out = String::with_capacity(buf.len() + body.len() + 96);
    out.push_str(status_line);
    out.push_str("\r\n");
    for line in kept {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("content-type: application/json\r\nconnection: close\r\n");
    out.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<S: AsyncWrite + Unpin> Conn<S> {
    /// Starts sending a JSON answer in place of `head` if it is one of hyper's empty error
    /// answers; `reported` is what the write then reports once it is all sent.
    fn replace(&mut self, head: &[u8], reported: usize) {
        if self.replacement.is_none()
            && let Some(bytes) = json_error_for(head)
        {
            self.replacement = Some(Replacement {
                bytes,
                sent: 0,
                reported,
            });
        }
    }

    /// Writes the rest of the replacement, if any, to the socket.
    fn poll_send_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(r) = &mut self.replacement else {
            return Poll::Ready(Ok(()));
        };
        while r.sent < r.bytes.len() {
            match Pin::new(&mut self.io).poll_write(cx, &r.bytes[r.sent..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => r.sent += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// With a replacement under way: finishes sending it, then reports hyper's buffer
    /// (at most `len`, its length now) as written.
    fn poll_finish_replacement(
        &mut self,
        cx: &mut Context<'_>,
        len: usize,
    ) -> Option<Poll<io::Result<usize>>> {
        self.replacement.as_ref()?;
        Some(match self.poll_send_replacement(cx) {
            Poll::Ready(Ok(())) => {
                let reported = self.replacement.take().map_or(0, |r| r.reported);
                Poll::Ready(Ok(reported.min(len)))
            }
            Poll::Ready(Err(e)) => {
                self.replacement = None;
                Poll::Ready(Err(e))
            }
            Poll::Pending => Poll::Pending,
        })
    }
}

impl<S> Drop for Conn<S> {
    fn drop(&mut self) {
        self.metrics.api_connections.dec();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Conn<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Conn<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.replace(buf, buf.len());
        if let Some(done) = this.poll_finish_replacement(cx, buf.len()) {
            return done;
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    /// hyper writes a head without a body as one slice (the others, if any, empty).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs.iter().map(|b| b.len()).sum();
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (filled.next(), filled.next()) {
            this.replace(only, total);
        }
        if let Some(done) = this.poll_finish_replacement(cx, total) {
            return done;
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_replacement(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(this.poll_send_replacement(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What hyper 1.x writes for a URI over its limit.
    const HYPER_414: &[u8] =
        b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\n\
        date: Sat, 02 May 2026 10:00:00 GMT\r\n\r\n";

    /// Splits an answer into head and body, checking the content-length.
    fn split(answer: &[u8]) -> (String, serde_json::Value) {
        let text = std::str::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap();
        assert_eq!(length.parse::<usize>().unwrap(), body.len(), "{text}");
        (head.to_string(), serde_json::from_str(body).unwrap())
    }

    #[test]
    fn hypers_414_gets_a_json_body() {
        let answer = json_error_for(HYPER_414).unwrap();
        let (head, body) = split(&answer);
        let body_text = body.to_string();
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 414 URI Too Long\r\ndate: Sat, 02 May 2026 10:00:00 GMT\r\n\
                 content-type: application/json\r\nconnection: close\r\n\
                 content-length: {}",
                body_text.len()
            )
        );
        assert_eq!(
            body["error"],
            "request line too long: the URI is over the server's limit of 65534 bytes; API \
             paths are short"
        );
    }

    #[test]
    fn hypers_431_gets_a_json_body_in_http_1_0_too() {
        for version in ["HTTP/1.1", "HTTP/1.0"] {
            let hyper = format!(
                "{version} 431 Request Header Fields Too Large\r\nContent-Length:  0 \r\n\
                 connection: keep-alive\r\n\r\n"
            );
            let answer = json_error_for(hyper.as_bytes()).unwrap();
            let (head, body) = split(&answer);
            assert!(
                head.starts_with(&format!(
                    "{version} 431 Request Header Fields Too Large\r\n\
                     content-type: application/json\r\nconnection: close\r\ncontent-length: "
                )),
                "{head}"
            );
            assert!(!head.contains("keep-alive"), "{head}");
            assert_eq!(
                body["error"],
                "request headers too large (over 417792 bytes or more than 100 headers); send \
                 fewer or smaller headers"
            );
        }
    }

    #[test]
    fn other_writes_are_not_rewritten() {
        let not = [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 4140 X\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/2 414 URI Too Long\r\ncontent-length: 0\r\n\r\n",
            // A body follows, or is announced, or the head is not all there.
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 2\r\n\r\n{}",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 2\r\n\r\n",
            b"HTTP/1.1 431 X\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
            b"{\"error\":\"HTTP/1.1 414 \"}",
            b"",
        ];
        for buf in not {
            assert_eq!(
                json_error_for(buf),
                None,
                "{}",
                String::from_utf8_lossy(buf)
            );
        }
    }

    /// A socket that takes at most 7 bytes per write and is not ready every other time.
    #[derive(Default)]
    struct Slow {
        written: Vec<u8>,
        calls: usize,
    }

    impl AsyncWrite for Slow {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.calls += 1;
            if this.calls % 2 == 1 {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(7);
            this.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn slow_conn() -> Conn<Slow> {
        Conn {
            io: Slow::default(),
            _permit: None,
            _slot: None,
            metrics: Arc::new(Metrics::new()),
            replacement: None,
        }
    }

    /// Writes `bufs` as hyper would (the same slices again after Pending), vectored or not;
    /// returns what each poll answered.
    fn write_all(conn: &mut Conn<Slow>, bufs: &[&[u8]], vectored: bool) -> Vec<Poll<usize>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut polls = Vec::new();
        loop {
            let slices: Vec<io::IoSlice<'_>> = bufs.iter().map(|b| io::IoSlice::new(b)).collect();
            let poll = if vectored {
                Pin::new(&mut *conn).poll_write_vectored(&mut cx, &slices)
            } else {
                Pin::new(&mut *conn).poll_write(&mut cx, bufs[0])
            };
            match poll {
                Poll::Ready(r) => {
                    polls.push(Poll::Ready(r.unwrap()));
                    return polls;
                }
                Poll::Pending => polls.push(Poll::Pending),
            }
            assert!(polls.len() < 1000, "the write never finished");
        }
    }

    #[test]
    fn the_replacement_is_all_sent_before_hypers_write_is_reported() {
        let expected = json_error_for(HYPER_414).unwrap();
        for vectored in [false, true] {
            let mut conn = slow_conn();
            let bufs: &[&[u8]] = if vectored {
                &[HYPER_414, b""]
            } else {
                &[HYPER_414]
            };
            let polls = write_all(&mut conn, bufs, vectored);
            // Pending while any of the replacement is unsent (the socket takes 7 bytes per
            // write and is not ready every other time), then the whole of hyper's buffer.
            let pendings = expected.len().div_ceil(7);
            assert_eq!(polls.len(), pendings + 1, "vectored {vectored}");
            assert!(polls[..pendings].iter().all(Poll::is_pending));
            assert_eq!(polls[pendings], Poll::Ready(HYPER_414.len()));
            assert_eq!(
                String::from_utf8_lossy(&conn.io.written),
                String::from_utf8_lossy(&expected),
                "vectored {vectored}"
            );
            assert!(conn.replacement.is_none());
            // Later writes go through unchanged.
            let more = write_all(&mut conn, &[b"abc"], vectored);
            assert_eq!(more.last(), Some(&Poll::Ready(3)));
            assert!(conn.io.written.ends_with(b"}abc"));
        }
    }

    #[test]
    fn ordinary_writes_pass_through() {
        let ok: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        let mut conn = slow_conn();
        let polls = write_all(&mut conn, &[ok], false);
        assert_eq!(polls, vec![Poll::Pending, Poll::Ready(7)]);
        assert_eq!(conn.io.written, &ok[..7]);
        // A head and a body in separate slices are never rewritten, even for a 414.
        let mut conn = slow_conn();
        write_all(&mut conn, &[HYPER_414, b"{}"], true);
        assert_eq!(conn.io.written, &HYPER_414[..7]);
    }
}
