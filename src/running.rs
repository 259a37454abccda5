//! The handle of an HTTP endpoint that serves until told to stop (the registry mirror,
//! the metrics endpoint): each connection watches the channel, and `stop` waits until
//! every one of them has let go of it.
pub struct Running {
    stop: tokio::sync::watch::Sender<bool>,
}

impl Running {
    pub fn new(stop: tokio::sync::watch::Sender<bool>) -> Running {
        Running { stop }
    }

    /// Stops accepting and asks every open connection to finish its request and close;
    /// resolves when all are closed (the caller bounds the wait, see server::shutdown).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        self.stop.closed().await;
    }
}
