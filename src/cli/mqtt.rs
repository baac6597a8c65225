//! `vesper mqtt password|secret new|topics|acl`.

use std::path::Path;

use clap::Subcommand;

use vesper::acl::{self, Access, Decision, Subject, Topics};
use vesper::credentials::MasterSecret;
use vesper::serial::SerialNumber;

use super::Outcome;

#[derive(Subcommand)]
pub enum MqttCommand {
    /// Print a device's MQTT password (needs the master secret in MQTT_SECRET).
    #[command(after_help = "The password is the first 32 hex characters of\n\
        HMAC-SHA256(key = MQTT_SECRET, message = SN). Nothing is stored anywhere.")]
    Password {
        /// The device's serial number (its MQTT username).
        #[arg(required_unless_present = "service")]
        sn: Option<SerialNumber>,
        /// Print the password of the backend's service account NAME instead (serve.service_account).
        #[arg(long, value_name = "NAME", conflicts_with = "sn")]
        service: Option<String>,
    },
    /// Make and print a new master secret.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Print a device's topics (from the configuration's templates, or the defaults).
    Topics { sn: SerialNumber },
    /// Ask the access rules a question: may USERNAME do ACC on TOPIC? Prints allow or deny.
    #[command(
        after_help = "ACC is mosquitto's number: 1 read, 2 write (publish), 4 subscribe.\n\
        USERNAME is a serial number (a device), `service` (the backend), or a user id; for a user,\n\
        --owns lists the devices whose owner or users_list holds them.\n\
        Example: vesper mqtt acl PV-26A18-BC02R-X7KQA vesper/PV-26A18-BC02R-X7KQA/data 2"
    )]
    Acl {
        username: String,
        topic: String,
        acc: i64,
        /// Serial numbers this user may use (phone-app users only).
        #[arg(long, value_delimiter = ',', value_name = "SN,...")]
        owns: Vec<SerialNumber>,
    },
}

#[derive(Subcommand)]
pub enum SecretCommand {
    /// Print a new master secret: 32 random bytes as 64 hex characters.
    #[command(
        after_help = "Keep it in a file only the backend's user can read, and name that file in\n\
        serve.secret_file (or pass it as MQTT_SECRET):\n\
        \n    vesper mqtt secret new > /etc/vesper/mqtt_secret && chmod 600 /etc/vesper/mqtt_secret\n\n\
        Every device password derives from it: changing it changes every device's password."
    )]
    New,
}

fn topics(config: Option<&Path>) -> anyhow::Result<Topics> {
    // The templates are optional configuration: without a config file, the defaults apply.
    match vesper::config::locate(config) {
        Ok(path) => Ok(vesper::config::load(&path)?.mqtt.topics),
        Err(_) => Ok(Topics::default()),
    }
}

pub fn run(cmd: MqttCommand, config: Option<&Path>) -> anyhow::Result<Outcome> {
    match cmd {
        MqttCommand::Password { sn, service } => {
            let secret =
                MasterSecret::from_env_value(std::env::var_os(vesper::credentials::SECRET_ENV))?;
            let password = match (sn, service) {
                (Some(sn), _) => secret.device_password(&sn),
                (None, Some(name)) => secret.service_password(&name),
                (None, None) => unreachable!("clap requires one"),
            };
            println!("{}", password.expose());
        }
        MqttCommand::Secret(SecretCommand::New) => {
            println!("{}", MasterSecret::generate_hex());
        }
        MqttCommand::Topics { sn } => {
            let topics = topics(config)?;
            println!("data     {}", topics.data.for_device(&sn));
            println!("status   {}", topics.status.for_device(&sn));
            println!("control  {}", topics.control.for_device(&sn));
        }
        MqttCommand::Acl {
            username,
            topic,
            acc,
            owns,
        } => {
            let topics = topics(config)?;
            let access = Access::from_acc(acc).ok_or_else(|| {
                anyhow::anyhow!("acc {acc} is not 1 (read), 2 (write) or 4 (subscribe)")
            })?;
            let device: Option<SerialNumber> = username.parse().ok();
            let may_use = |sn: &SerialNumber| owns.contains(sn);
            let subject = match (&device, username.as_str()) {
                (Some(sn), _) => Subject::Device(sn),
                (None, "service") => Subject::Service,
                (None, _) => Subject::User { may_use: &may_use },
            };
            let decision = acl::authorize(&topics, &subject, &topic, access);
            println!(
                "{}",
                if decision == Decision::Allow {
                    "allow"
                } else {
                    "deny"
                }
            );
            if decision == Decision::Deny {
                return Ok(Outcome::Problems);
            }
        }
    }
    Ok(Outcome::Success)
}
