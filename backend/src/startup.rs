//! Builds the actix-web application from [`Settings`] and runs it.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{Compress, Logger};
use actix_web::{App, HttpServer, web};

use crate::configuration::Settings;
use crate::routes;

/// A bound, not yet awaited server.
pub struct Application {
    port: u16,
    server: Server,
}

impl Application {
    /// Binds `host:port` (port 0 picks a free one) and builds the server.
    pub fn build(settings: Settings) -> std::io::Result<Self> {
        let listener = TcpListener::bind((settings.host.as_str(), settings.port))?;
        let port = listener.local_addr()?.port();
        let data = web::Data::new(settings.clone());
        let static_dir = settings.static_dir.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(Logger::new("%r %s %Dms").log_target("http"))
                .wrap(Compress::default())
                .app_data(data.clone())
                .service(routes::health::health)
                .configure(routes::spa::configure(static_dir.clone()))
        })
        .listen(listener)?
        .run();
        Ok(Self { port, server })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the process is stopped.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
