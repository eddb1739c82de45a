//! Just enough HTTP/1.1 for the simulator: read one request (head capped at 16 KiB, body by
//! `Content-Length` capped at 64 KiB), merge its parameters, and format a response head.
//!
//! Hand-rolled rather than hyper because the simulator must misbehave on purpose: announce a length
//! it does not send, stop mid-body, stall, trickle. One request per connection; every answer says
//! `Connection: close`.

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The merged query-string and form parameters of one request.
pub(crate) type Params = BTreeMap<String, String>;

const MAX_HEAD_BYTES: usize = 16 * 1024;
const MAX_BODY_BYTES: usize = 64 * 1024;

/// One parsed request.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    query: String,
    is_form: bool,
    body: Vec<u8>,
}

/// Why no request came out of a connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// The client went away (or failed) before sending a whole request: nobody to answer.
    Closed,
    /// A request the simulator refuses, with the status and plain-text reason to answer.
    Reject(u16, &'static str),
}

impl Request {
    /// The API lives at `/2.0/`; everything else is a 404.
    pub(crate) fn is_api_path(&self) -> bool {
        matches!(self.path.as_str(), "/2.0/" | "/2.0")
    }

    /// Query-string parameters, then form-body parameters (which win on a clash).
    pub(crate) fn params(&self) -> Params {
        let query = url::form_urlencoded::parse(self.query.as_bytes());
        let form = url::form_urlencoded::parse(if self.is_form { &self.body } else { &[] });
        query
            .chain(form)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// Reads one request from `conn`.
pub(crate) async fn read_request<R: AsyncRead + Unpin>(
    conn: &mut R,
) -> Result<Request, RequestError> {
    use RequestError::{Closed, Reject};

    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0_u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Reject(431, "request headers exceed 16 KiB"));
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    if head_end > MAX_HEAD_BYTES {
        return Err(Reject(431, "request headers exceed 16 KiB"));
    }
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| Reject(400, "bad request"))?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(version), None) = (
        request_line.next(),
        request_line.next(),
        request_line.next(),
        request_line.next(),
    ) else {
        return Err(Reject(400, "bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(Reject(400, "only HTTP/1.x is spoken here"));
    }
    let mut content_length = 0;
    let mut is_form = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(Reject(400, "bad header line"))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                content_length = value
                    .parse::<usize>()
                    .map_err(|_| Reject(400, "bad content-length"))?;
            }
            "content-type" => {
                is_form = value
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded");
            }
            "transfer-encoding" => return Err(Reject(501, "send a content-length, not chunks")),
            _ => {}
        }
    }
    if content_length > MAX_BODY_BYTES {
        return Err(Reject(413, "request body exceeds 64 KiB"));
    }
    let mut body = buf[head_end + 4..].to_vec();
    let already = body.len().min(content_length);
    body.resize(content_length, 0);
    conn.read_exact(&mut body[already..])
        .await
        .map_err(|_| Closed)?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        is_form,
        body,
    })
}

/// The status line and headers of every answer, with `extra` headers (`Retry-After`, a service's
/// rate-limit headers) before the fixed ones; the body follows.
pub(crate) fn response_head(
    status: u16,
    content_type: &str,
    content_length: u64,
    extra: &[(&str, String)],
) -> String {
    let extra: String = extra
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {content_length}\r\n\
         {extra}Server: openresty\r\nVia: 1.1 google\r\nAccess-Control-Allow-Origin: *\r\n\
         Connection: close\r\n\r\n",
        reason_phrase(status)
    )
}

pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(raw: &[u8]) -> Result<Request, RequestError> {
        let mut input = raw;
        read_request(&mut input).await
    }

    #[tokio::test]
    async fn form_body_and_query_merge_with_the_body_winning() {
        let req = read(
            b"POST /2.0/?method=a&format=json HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 28\r\n\r\n\
              method=user.getInfo&user=a+b",
        )
        .await
        .unwrap();
        assert!(req.is_api_path());
        let params = req.params();
        assert_eq!(params["method"], "user.getInfo");
        assert_eq!(params["format"], "json");
        assert_eq!(params["user"], "a b");
    }

    #[tokio::test]
    async fn body_is_not_form_without_the_content_type() {
        let req = read(b"POST /2.0 HTTP/1.1\r\nContent-Length: 5\r\n\r\nuser=")
            .await
            .unwrap();
        assert!(req.params().is_empty());
    }

    #[tokio::test]
    async fn limits_and_garbage_are_rejected() {
        let huge_header = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(17_000));
        let cases: [(&[u8], RequestError); 5] = [
            (huge_header.as_bytes(), RequestError::Reject(431, "")),
            (
                b"POST /2.0/ HTTP/1.1\r\nContent-Length: 70000\r\n\r\n",
                RequestError::Reject(413, ""),
            ),
            (b"GET /2.0/\r\n\r\n", RequestError::Reject(400, "")),
            (b"GET /2.0/ HTTP/1.1\r\nHost: x\r\n", RequestError::Closed),
            (
                b"POST /2.0/ HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort",
                RequestError::Closed,
            ),
        ];
        for (raw, want) in cases {
            let got = read(raw).await.unwrap_err();
            match (got, want) {
                (RequestError::Reject(a, _), RequestError::Reject(b, _)) => assert_eq!(a, b),
                (got, want) => assert_eq!(got, want),
            }
        }
    }
}
