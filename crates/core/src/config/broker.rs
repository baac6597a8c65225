//! Where the backend's heartbeat listener meets the broker (`[serve.broker]`): over MQTT, as the
//! service account, or, on a RabbitMQ cluster, over AMQP as one of several competing consumers
//! of one durable queue (`amqp = [...]`, DESIGN.md section 12).

use serde::Deserialize;

/// Where the backend's heartbeat listener connects, as the service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// AMQP addresses of a RabbitMQ cluster's nodes (`amqp://HOST:PORT/VHOST`, no credentials:
    /// the service account's are derived from the master secret). Non-empty: device messages
    /// are consumed over AMQP from the durable queue `SERVICE_ACCOUNT.heartbeats` bound to
    /// `amq.topic`, trying the nodes in turn, instead of through an MQTT subscription.
    pub amqp: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBroker {
    host: String,
    port: Option<u16>,
    #[serde(default)]
    tls: bool,
    #[serde(default)]
    amqp: Vec<String>,
}

impl RawBroker {
    /// The checked setting, or the key and what is wrong with it.
    pub(super) fn check(self) -> Result<Broker, (String, String)> {
        if self.host.trim().is_empty() {
            return Err(("serve.broker.host".into(), "must not be empty".into()));
        }
        for address in &self.amqp {
            amqp_address_problem(address).map_err(|why| {
                (
                    "serve.broker.amqp".to_owned(),
                    format!("{address:?}: {why}"),
                )
            })?;
        }
        let port = self.port.unwrap_or(if self.tls { 8883 } else { 1883 });
        Ok(Broker {
            host: self.host,
            port,
            tls: self.tls,
            amqp: self.amqp,
        })
    }
}

/// Why `address` is not an AMQP node address the listener can use.
fn amqp_address_problem(address: &str) -> Result<(), &'static str> {
    let rest = address
        .strip_prefix("amqp://")
        .or_else(|| address.strip_prefix("amqps://"))
        .ok_or("must start with amqp:// or amqps://")?;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "must not carry credentials (the service account logs in with its derived password)",
        );
    }
    if authority.is_empty() {
        return Err("names no host");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_addresses_name_a_node_and_never_a_password() {
        assert!(amqp_address_problem("amqp://10.0.0.5:5672/%2f").is_ok());
        assert!(amqp_address_problem("amqps://rabbit.example.com").is_ok());
        assert_eq!(
            amqp_address_problem("http://10.0.0.5"),
            Err("must start with amqp:// or amqps://")
        );
        assert!(
            amqp_address_problem("amqp://guest:guest@10.0.0.5/")
                .unwrap_err()
                .contains("credentials")
        );
        assert_eq!(amqp_address_problem("amqp:///%2f"), Err("names no host"));
    }

    fn check(text: &str) -> Result<Broker, (String, String)> {
        toml::from_str::<RawBroker>(text).unwrap().check()
    }

    #[test]
    fn the_amqp_nodes_are_optional_and_checked_with_their_key() {
        let mqtt = check("host = \"10.0.0.5\"").unwrap();
        assert_eq!((mqtt.port, mqtt.amqp.len()), (1883, 0));
        let rabbit = check("host = \"10.0.0.5\"\namqp = [\"amqp://10.0.0.5:5672/%2f\"]").unwrap();
        assert_eq!(rabbit.amqp, ["amqp://10.0.0.5:5672/%2f"]);
        let (key, why) = check("host = \"h\"\namqp = [\"amqp://guest:guest@h/\"]").unwrap_err();
        assert_eq!(key, "serve.broker.amqp");
        assert!(why.contains("credentials"), "{why}");
    }
}
