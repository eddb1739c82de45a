//! `GET /metrics` as a stream: the exposition is encoded piece by piece as the scraper reads it,
//! gzip-compressed when the scraper accepts it.
//!
//! With ten thousand probes the text is tens of megabytes. Rendered whole for each scrape, every
//! slow scraper held a copy until it had read the last byte, so thirty slow scrapers held thirty
//! copies. Streamed, a scrape holds one piece (plus the compressor's window): the next piece is
//! encoded only when the connection has sent the last one. Prometheus always sends
//! `Accept-Encoding: gzip`, and the text format compresses about tenfold, so the bytes on the
//! wire shrink as much; compressing a piece at the fastest level costs well under a millisecond,
//! and the runtime runs other tasks between pieces.

use std::convert::Infallible;
use std::io::Write as _;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::metrics::Pieces;

/// How much text one piece holds: large enough that per-piece costs vanish, small enough that a
/// slow scraper holds little.
pub const PIECE_BYTES: usize = 64 * 1024;

/// The exposition's media type, text format 0.0.4.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The response to a scrape: `pieces` streamed, compressed when `request` accepts gzip.
pub fn respond(pieces: Pieces, request: &HeaderMap) -> Response {
    let gzip = accepts_gzip(request);
    let stream = Stream {
        pieces,
        encoder: gzip.then(|| GzEncoder::new(Vec::new(), Compression::fast())),
    };
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// Whether the scraper accepts gzip: `gzip` (or `x-gzip`, or `*`) listed in `Accept-Encoding`
/// without `q=0` (RFC 9110 §12.5.3).
fn accepts_gzip(request: &HeaderMap) -> bool {
    request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|entry| {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|param| {
                let param = param.trim().to_ascii_lowercase();
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            !refused
                && (coding.eq_ignore_ascii_case("gzip")
                    || coding.eq_ignore_ascii_case("x-gzip")
                    || coding == "*")
        })
}

/// The body: each piece is encoded when the connection asks for more, so a scraper that reads
/// slowly holds one piece, not the exposition.
struct Stream {
    pieces: Pieces,
    /// The compressor, when the scraper accepts gzip; `None` once finished.
    encoder: Option<GzEncoder<Vec<u8>>>,
}

impl Stream {
    /// The next bytes to send, `None` at the end.
    fn next_bytes(&mut self) -> Option<Bytes> {
        while let Some(piece) = self.pieces.next_piece() {
            let Some(encoder) = self.encoder.as_mut() else {
                return Some(Bytes::from(piece));
            };
            // Writing into a Vec cannot fail.
            let _ = encoder.write_all(piece.as_bytes());
            let compressed = std::mem::take(encoder.get_mut());
            if !compressed.is_empty() {
                return Some(Bytes::from(compressed));
            }
        }
        let rest = self.encoder.take()?.finish().ok()?;
        (!rest.is_empty()).then(|| Bytes::from(rest))
    }
}

impl futures_core::Stream for Stream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(self.next_bytes().map(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(value).unwrap(),
        );
        headers
    }

    #[test]
    fn gzip_is_used_when_accepted_and_not_refused() {
        for (value, gzip) in [
            ("gzip", true),
            ("gzip, deflate, br", true),
            ("br;q=1.0, GZIP;q=0.5", true),
            ("x-gzip", true),
            ("*", true),
            ("identity", false),
            ("gzip;q=0", false),
            ("gzip; q=0.000", false),
            ("deflate, br", false),
            ("", false),
        ] {
            assert_eq!(accepts_gzip(&accept(value)), gzip, "{value:?}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
