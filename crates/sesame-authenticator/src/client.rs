//! The device API client: activation, device-signed requests, the event stream.

use crate::device::DeviceKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sesame_proto::device::{
    self as api, ActivateRequest, ActivateResponse, DeviceEvent, DeviceStatus, PendingResponse,
    PhoneSignInRequest, PinKeyRequest, RespondRequest, RespondResponse,
};
use sesame_proto::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the Sesame server at {0}: {1}")]
    Unreachable(String, String),
    /// The server refused, with its own explanation.
    #[error("{}", .0.message)]
    Refused(ApiError, u16),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

impl ClientError {
    /// Whether the server refused because it does not know this device: it was removed (on My
    /// security info, by an administrator, or unregistered from a copy of this vault). The
    /// server answers every signed request of such a device, the event stream included, with
    /// 401 `unknown_device`.
    pub fn is_unknown_device(&self) -> bool {
        matches!(self, ClientError::Refused(e, 401) if e.error == "unknown_device")
    }
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("sesame-authenticator/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
}

/// For ordinary calls: a stuck server never hangs the app.
fn http() -> reqwest::Client {
    builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("HTTP client builds")
}

async fn decode<T: serde::de::DeserializeOwned>(
    server: &str,
    resp: reqwest::Response,
) -> Result<T, ClientError> {
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ClientError::Unreachable(server.into(), e.to_string()))?;
    if status.is_success() {
        serde_json::from_slice(&body).map_err(|e| ClientError::Protocol(e.to_string()))
    } else {
        match serde_json::from_slice::<ApiError>(&body) {
            Ok(e) => Err(ClientError::Refused(e, status.as_u16())),
            Err(_) => Err(ClientError::Protocol(format!("HTTP {status}"))),
        }
    }
}

/// Completes an activation link: returns the server's answer for the new device.
pub async fn activate(
    server: &str,
    code: &str,
    device_name: &str,
    key: &DeviceKey,
) -> Result<ActivateResponse, ClientError> {
    let req = ActivateRequest {
        code: code.to_string(),
        device_name: device_name.to_string(),
        alg: api::ALG_ES256.to_string(),
        public_key: key.public_key(),
    };
    let resp = http()
        .post(format!("{server}{}", api::PATH_ACTIVATE))
        .json(&req)
        .send()
        .await
        .map_err(|e| ClientError::Unreachable(server.into(), e.to_string()))?;
    decode(server, resp).await
}

/// A registered device talking to its server.
fn new_nonce() -> String {
    let mut n = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut n);
    URL_SAFE_NO_PAD.encode(n)
}

pub struct DeviceClient<'a> {
    pub server: String,
    pub device_id: String,
    pub key: &'a DeviceKey,
    http: reqwest::Client,
    /// The event stream stays open indefinitely, so it has no overall timeout.
    stream_http: reqwest::Client,
}

impl<'a> DeviceClient<'a> {
    pub fn new(server: &str, device_id: &str, key: &'a DeviceKey) -> Self {
        DeviceClient {
            server: server.trim_end_matches('/').to_string(),
            device_id: device_id.to_string(),
            key,
            http: http(),
            stream_http: builder().build().expect("HTTP client builds"),
        }
    }

    fn signed_with(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        nonce: String,
    ) -> reqwest::RequestBuilder {
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let msg = api::request_message(method.as_str(), path, &body, ts, &nonce, &self.device_id);
        http.request(method, format!("{}{path}", self.server))
            .header(api::HEADER_DEVICE, &self.device_id)
            .header(api::HEADER_TIMESTAMP, ts.to_string())
            .header(api::HEADER_NONCE, nonce)
            .header(api::HEADER_SIGNATURE, self.key.sign(&msg))
            .header("content-type", "application/json")
            .body(body)
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        self.send_with_nonce(method, path, body, new_nonce()).await
    }

    async fn send_with_nonce<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        nonce: String,
    ) -> Result<T, ClientError> {
        let resp = self
            .signed_with(&self.http, method, path, body, nonce)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(self.server.clone(), e.to_string()))?;
        decode(&self.server, resp).await
    }

    pub async fn pending(&self) -> Result<PendingResponse, ClientError> {
        self.send(reqwest::Method::GET, api::PATH_PENDING, Vec::new())
            .await
    }

    pub async fn respond(&self, req: &RespondRequest) -> Result<RespondResponse, ClientError> {
        self.send(
            reqwest::Method::POST,
            api::PATH_RESPOND,
            serde_json::to_vec(req).expect("serialises"),
        )
        .await
    }

    pub async fn status(&self) -> Result<DeviceStatus, ClientError> {
        self.send(reqwest::Method::GET, api::PATH_STATUS, Vec::new())
            .await
    }

    pub async fn pin_key(&self, req: &PinKeyRequest) -> Result<DeviceStatus, ClientError> {
        self.send(
            reqwest::Method::POST,
            api::PATH_PIN_KEY,
            serde_json::to_vec(req).expect("serialises"),
        )
        .await
    }

    /// Turns phone sign-in on or off. Turning it on needs `prove`: the PIN key's signature over
    /// [`api::phone_sign_in_message`] for this request's nonce.
    pub async fn phone_sign_in(
        &self,
        enabled: bool,
        prove: Option<&DeviceKey>,
    ) -> Result<DeviceStatus, ClientError> {
        let nonce = new_nonce();
        let req = PhoneSignInRequest {
            enabled,
            proof: prove.map(|k| k.sign(&api::phone_sign_in_message(&self.device_id, &nonce))),
        };
        self.send_with_nonce(
            reqwest::Method::POST,
            api::PATH_PHONE_SIGN_IN,
            serde_json::to_vec(&req).expect("serialises"),
            nonce,
        )
        .await
    }

    pub async fn unregister(&self) -> Result<serde_json::Value, ClientError> {
        self.send(reqwest::Method::POST, api::PATH_UNREGISTER, b"{}".to_vec())
            .await
    }

    /// Opens the event stream; call [`EventStream::next`] for each event.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let resp = self
            .signed_with(
                &self.stream_http,
                reqwest::Method::GET,
                api::PATH_EVENTS,
                Vec::new(),
                new_nonce(),
            )
            .header("accept", "text/event-stream")
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(self.server.clone(), e.to_string()))?;
        if !resp.status().is_success() {
            return Err(decode::<serde_json::Value>(&self.server, resp)
                .await
                .err()
                .unwrap_or(ClientError::Protocol("stream refused".into())));
        }
        Ok(EventStream {
            resp,
            buf: String::new(),
            retry: None,
        })
    }
}

/// Server-Sent Events, parsed just enough: `data:` lines of one event joined, `retry:` kept,
/// comments ignored.
pub struct EventStream {
    resp: reqwest::Response,
    buf: String,
    retry: Option<std::time::Duration>,
}

impl EventStream {
    /// How long the server asked to wait before reconnecting (`retry:`), if it did.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry
    }

    /// The next event, or `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<DeviceEvent>, ClientError> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                if let Some(ms) = block
                    .lines()
                    .find_map(|l| l.strip_prefix("retry:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    // Bounded: a server cannot make the app wait for ever.
                    self.retry = Some(std::time::Duration::from_millis(ms.min(60_000)));
                }
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim_start)
                    .collect();
                if data.is_empty() {
                    continue;
                }
                let ev = serde_json::from_str(&data.join("\n"))
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                return Ok(Some(ev));
            }
            match self
                .resp
                .chunk()
                .await
                .map_err(|e| ClientError::Unreachable(String::new(), e.to_string()))?
            {
                Some(bytes) => self
                    .buf
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                None => return Ok(None),
            }
        }
    }
}
