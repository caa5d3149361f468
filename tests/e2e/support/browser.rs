//! A real browser for the tests: headless Chromium driven through chromedriver's W3C
//! WebDriver HTTP API.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{DEADLINE, free_port, repo_root, terminate};

/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A program the browser tests need: `$env`, else its Debian path. Missing is a failure,
/// never a skip: hack/deps.sh installs both.
fn program(env: &str, default: &str, package: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} is missing: the browser tests need Chromium and chromedriver (install the Debian packages chromium and chromium-driver, `make deps` does as root, or set {env} to {package})",
        path.display()
    );
    path
}

/// chromedriver with one headless Chromium session. Ended when dropped.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
}

impl Browser {
    pub async fn start() -> Browser {
        let chromium = program("CHROMIUM", "/usr/bin/chromium", "a Chromium binary");
        let chromedriver = program("CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver");
        let port = free_port();
        let logs = repo_root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let log = std::fs::File::create(logs.join(format!("chromedriver-{port}.log"))).unwrap();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromedriver.display()));
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .timeout(DEADLINE)
            .build()
            .unwrap();
        let mut browser = Browser {
            driver,
            base,
            session: String::new(),
            http,
        };
        browser.wait_driver_ready().await;
        browser.session = browser.new_session(&chromium).await;
        browser
    }

    async fn wait_driver_ready(&self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let ready = match self.http.get(format!("{}/status", self.base)).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready"
            );
        }
    }

    async fn new_session(&self, chromium: &Path) -> String {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000"],
            },
        }}});
        let value = self.call("POST", "/session", Some(capabilities)).await;
        value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {value}"))
            .to_owned()
    }

    /// One WebDriver command: its `value`, or a failed test with the driver's error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let response = request.send().await.map_err(|e| e.to_string())?;
        let ok = response.status().is_success();
        let value: Value = response.json().await.map_err(|e| e.to_string())?;
        if ok {
            Ok(value["value"].clone())
        } else {
            Err(value["value"].to_string())
        }
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub async fn open(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({"url": url})))
            .await;
    }

    /// The first element matching `css`, if there is one now.
    pub async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .try_call(
                "POST",
                &self.at("/element"),
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .ok()?;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// The visible text of the first element matching `css`, if there is one now.
    pub async fn text(&self, css: &str) -> Option<String> {
        let element = self.find(css).await?;
        let text = self
            .try_call("GET", &self.at(&format!("/element/{element}/text")), None)
            .await
            .ok()?;
        text.as_str().map(str::to_owned)
    }

    /// Waits until the text of `css` satisfies `check`, and returns it.
    pub async fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(150));
        loop {
            tick.tick().await;
            let text = self.text(css).await;
            if let Some(text) = &text
                && check(text)
            {
                return text.clone();
            }
            if tokio::time::Instant::now() >= deadline {
                let page = self.text("body").await.unwrap_or_default();
                panic!(
                    "timed out after {DEADLINE:?} waiting for {what} in {css} (last: {text:?}); the page:\n{page}"
                );
            }
        }
    }

    /// Clicks the element matching `css`; found again if the page redraws it meanwhile.
    pub async fn click(&self, css: &str) {
        self.on_element(css, "/click", json!({})).await;
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(css, "/value", json!({"text": text})).await;
    }

    /// Sends one command to the element matching `css`, finding it again while the page
    /// replaces it (a live page redraws when the cluster changes).
    async fn on_element(&self, css: &str, command: &str, body: Value) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let last = match self.find(css).await {
                Some(element) => {
                    let path = self.at(&format!("/element/{element}{command}"));
                    match self.try_call("POST", &path, Some(body.clone())).await {
                        Ok(_) => return,
                        Err(e) if e.contains("stale element") => e,
                        Err(e) => panic!("WebDriver {command} on {css}: {e}"),
                    }
                }
                None => format!("no {css} on the page"),
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {DEADLINE:?} sending {command} to {css}: {last}"
            );
        }
    }

    /// Runs a script in the page and returns what it returns.
    pub async fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Makes the window `width` by `height` CSS pixels (a phone's, say).
    pub async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            &self.at("/window/rect"),
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// A PNG of the whole page: the window is made as tall as the page first.
    pub async fn screenshot(&self, path: &Path) {
        let height = self
            .script("return document.documentElement.scrollHeight;")
            .await
            .as_u64()
            .unwrap_or(1000)
            .clamp(600, 4000);
        self.call(
            "POST",
            &self.at("/window/rect"),
            Some(json!({"width": 1280, "height": height + 140})),
        )
        .await;
        let png = self.call("GET", &self.at("/screenshot"), None).await;
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("a base64 screenshot"))
            .expect("valid base64");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

impl Drop for Browser {
    /// Ends the session (chromedriver closes Chromium), then stops chromedriver.
    fn drop(&mut self) {
        if !self.session.is_empty() {
            use std::io::{Read, Write};
            let address = self.base.trim_start_matches("http://").to_owned();
            if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    stream,
                    "DELETE /session/{} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n",
                    self.session
                );
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let pid = self.driver.id().to_string();
        terminate(&mut self.driver, &pid);
    }
}
