//! The clustered brokers' own auth protocols, each a thin dialect over the one decision of
//! [`crate::decision`] (DESIGN.md section 12): RabbitMQ's HTTP auth backend, EMQX 5's HTTP
//! authentication and authorization, and VerneMQ's webhooks. A dialect only reads its broker's
//! request into a [`LoginQuestion`](crate::decision::LoginQuestion) or
//! [`TopicQuestion`](crate::decision::TopicQuestion) and writes the verdict the way that broker
//! reads it; none has an ACL of its own. Each answers a denial in the form its broker takes as a
//! denial, never one it would read as "no opinion" (EMQX's default for no match is allow).

mod emqx;
pub(crate) mod rabbitmq;
mod vernemq;

use axum::Router;
use axum::routing::{any, post};

use super::SharedState;

/// The dialects' routes, served on the auth listener beside go-auth's.
pub fn routes() -> Router<SharedState> {
    Router::new()
        .route("/mqtt/rabbitmq/user", any(rabbitmq::user))
        .route("/mqtt/rabbitmq/vhost", any(rabbitmq::vhost))
        .route("/mqtt/rabbitmq/resource", any(rabbitmq::resource))
        .route("/mqtt/rabbitmq/topic", any(rabbitmq::topic))
        .route("/mqtt/emqx/authn", post(emqx::authn))
        .route("/mqtt/emqx/authz", post(emqx::authz))
        .route("/mqtt/vernemq", post(vernemq::hook))
}
