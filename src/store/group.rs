//! The group role of a store: named member lists, replaced whole.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::Micros;

/// A group without its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    pub name: String,
    pub count: u64,
    pub updated_at: Micros,
}

#[async_trait]
pub trait GroupStore: Send + Sync + 'static {
    /// Replaces (or creates) group `name` with `members` (sorted, distinct
    /// E.164 numbers), all or nothing: a reader sees the old list or the
    /// new one, never a mix.
    async fn replace_group(
        &self,
        name: &str,
        members: Vec<String>,
        now: Micros,
    ) -> Result<GroupSummary, StoreError>;

    /// Every group, by name.
    async fn groups(&self) -> Result<Vec<GroupSummary>, StoreError>;

    async fn group(&self, name: &str) -> Result<Option<GroupSummary>, StoreError>;

    /// Up to `limit` members after `after` (exclusive), in order.
    async fn group_members(
        &self,
        name: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;

    /// `false` when there was no such group.
    async fn delete_group(&self, name: &str) -> Result<bool, StoreError>;
}
