//! Kafka topics and PostgreSQL databases: list and create them.

use super::{AivenError, Client, Service};
use crate::config::TopicConfig;
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

/// Whether a create call made the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExists,
}

/// A Kafka topic as Aiven lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
}

impl Client {
    /// The topics of the Kafka service.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, AivenError> {
        #[derive(Deserialize)]
        struct Reply {
            topics: Vec<Topic>,
        }
        #[derive(Deserialize)]
        struct Topic {
            topic_name: String,
            #[serde(default)]
            partitions: i32,
            #[serde(default)]
            replication: i32,
        }
        let service = &self.config.kafka_service;
        let action = format!("list the topics of service {service:?}");
        let reply: Reply = self
            .call(
                Method::GET,
                &["service", service, "topic"],
                None,
                Some(Service::Kafka),
                &action,
            )
            .await?;
        Ok(reply
            .topics
            .into_iter()
            .map(|t| TopicInfo {
                name: t.topic_name,
                partitions: t.partitions,
                replication: t.replication,
            })
            .collect())
    }

    /// Creates a topic on the Kafka service.
    pub async fn create_topic(&self, topic: &TopicConfig) -> Result<Created, AivenError> {
        let service = &self.config.kafka_service;
        let action = format!("create topic {:?} on service {service:?}", topic.name);
        let body = json!({
            "topic_name": topic.name,
            "partitions": topic.partitions,
            "replication": topic.replication,
        });
        self.create(Service::Kafka, "topic", &body, &action).await
    }

    /// Creates a database on the PostgreSQL service.
    pub async fn create_database(&self, name: &str) -> Result<Created, AivenError> {
        let service = &self.config.pg_service;
        let action = format!("create database {name:?} on service {service:?}");
        let body = json!({ "database": name });
        self.create(Service::Pg, "db", &body, &action).await
    }

    /// `POST .../service/{service}/{what}`; 409 (it exists) is success.
    async fn create(
        &self,
        which: Service,
        what: &str,
        body: &serde_json::Value,
        action: &str,
    ) -> Result<Created, AivenError> {
        let service = self.service_name(which);
        let reply = self
            .call::<serde_json::Value>(
                Method::POST,
                &["service", service, what],
                Some(body),
                Some(which),
                action,
            )
            .await;
        match reply {
            Ok(_) => Ok(Created::Created),
            Err(AivenError::Conflict { .. }) => Ok(Created::AlreadyExists),
            Err(e) => Err(e),
        }
    }
}
