//! Prometheus metrics: the recorder, and per-route request counts and latencies.
//!
//! Requests are counted by route, method and status through [`TrackLayer`], which looks the
//! counter and histogram up once per (route, method, status) and keeps them: the request path
//! allocates nothing and takes no lock but a shared read lock for the lookup.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Installs the process-wide Prometheus recorder and returns the handle `/metrics` renders.
pub fn install_recorder() -> Result<PrometheusHandle, String> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_records".into()), BATCH_BUCKETS))
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_in_flight".into()), BATCH_BUCKETS))
        .map_err(|e| e.to_string())?
        .install_recorder()
        .map_err(|e| e.to_string())
}

/// The request counter and latency histogram of one route, method and status.
#[derive(Clone)]
struct Handles {
    method: Method,
    status: u16,
    requests: Counter,
    latency: Histogram,
}

/// Handles by route, then by method and status (a handful per route: a short list).
#[derive(Default)]
struct RouteMetrics {
    by_route: RwLock<HashMap<String, Vec<Handles>>>,
}

impl RouteMetrics {
    fn record(&self, route: &str, method: &Method, status: u16, seconds: f64) {
        let record = |h: &Handles| {
            h.requests.increment(1);
            h.latency.record(seconds);
        };
        {
            let map = self.by_route.read().unwrap_or_else(|p| p.into_inner());
            let found = map.get(route).and_then(|list| {
                list.iter()
                    .find(|h| h.status == status && h.method == method)
            });
            if let Some(h) = found {
                record(h);
                return;
            }
        }
        record(&self.register(route, method, status));
    }

    fn register(&self, route: &str, method: &Method, status: u16) -> Handles {
        let labels = [
            ("route", route.to_owned()),
            ("method", method.as_str().to_owned()),
            ("status", status.to_string()),
        ];
        let handles = Handles {
            method: method.clone(),
            status,
            requests: metrics::counter!("keel_http_requests_total", &labels),
            latency: metrics::histogram!("keel_http_request_duration_seconds", &labels),
        };
        let mut map = self.by_route.write().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(route.to_owned()).or_default();
        if !list
            .iter()
            .any(|h| h.status == status && h.method == method)
        {
            list.push(handles.clone());
        }
        handles
    }
}

/// Counts requests and records their latency by route, method and status.
#[derive(Clone, Default)]
pub(crate) struct TrackLayer {
    routes: Arc<RouteMetrics>,
}

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            routes: self.routes.clone(),
        }
    }
}

/// The service [`TrackLayer`] wraps around each route.
#[derive(Clone)]
pub(crate) struct Track<S> {
    inner: S,
    routes: Arc<RouteMetrics>,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = req.method().clone();
        TrackFuture {
            inner: self.inner.call(req),
            route,
            method,
            started: Instant::now(),
            routes: self.routes.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request in flight, timed.
    pub(crate) struct TrackFuture<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        method: Method,
        started: Instant,
        routes: Arc<RouteMetrics>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(resp) = &result {
            let route = this.route.as_ref().map_or("unmatched", |m| m.as_str());
            this.routes.record(
                route,
                this.method,
                resp.status().as_u16(),
                this.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(result)
    }
}

/// Drains histogram samples into buckets every few seconds (the exporter's housekeeping).
pub(crate) async fn upkeep(handle: PrometheusHandle, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => handle.run_upkeep(),
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
