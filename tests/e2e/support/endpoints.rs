//! Plain HTTP to the operator's endpoints, as any process on the network could send it.

/// A plain HTTP GET: (status, body).
pub async fn http_get(
    ip: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads one HTTP request from a client (for the receivers that stand in for webhooks and
/// chat services): its head and its body (by content-length).
pub async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, String)> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length {
                return Some((head.to_owned(), body[..length].to_owned()));
            }
        }
    }
}

/// Serves plain HTTP on a free loopback port, standing in for a webhook receiver or a chat
/// service: each request's head and body go to `answer`, which returns the status line
/// (such as "200 OK") and the JSON body to send back, if any. Returns the port.
pub async fn serve_http<F>(answer: F) -> u16
where
    F: Fn(&str, &str) -> (&'static str, Option<serde_json::Value>) + Send + Sync + 'static,
{
    serve_http_on("127.0.0.1", answer).await
}

/// [`serve_http`] on a free port of the address `ip` (one of this host's).
pub async fn serve_http_on<F>(ip: &str, answer: F) -> u16
where
    F: Fn(&str, &str) -> (&'static str, Option<serde_json::Value>) + Send + Sync + 'static,
{
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = std::sync::Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let Some((head, body)) = read_request(&mut stream).await else {
                    return;
                };
                let (status, json) = answer(&head, &body);
                let (kind, body) = match json {
                    Some(json) => ("content-type: application/json\r\n", json.to_string()),
                    None => ("", String::new()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\n{kind}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// The path a request's head asks for.
pub fn request_path(head: &str) -> String {
    head.split_whitespace().nth(1).unwrap_or("/").to_owned()
}

/// A real SMTP server (mailin) that keeps every message it accepts.
#[derive(Clone, Default)]
pub struct Mailbox {
    current: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    pub messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl mailin_embedded::Handler for Mailbox {
    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.lock().unwrap().extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let message = String::from_utf8_lossy(&std::mem::take(&mut *self.current.lock().unwrap()))
            .into_owned();
        self.messages.lock().unwrap().push(message);
        mailin_embedded::response::OK
    }
}

/// Starts an SMTP server on a free port of the address `ip`: its mailbox and port.
pub fn start_smtp(ip: &str) -> (Mailbox, u16) {
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let mailbox = Mailbox::default();
    let mut server = mailin_embedded::Server::new(mailbox.clone());
    server.with_name("smtp.test").with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (mailbox, port)
}
