//! The arguments of requests and the figures of replies: the broker core's own types
//! ([`crate::types`]), which frames carry field by field.

pub use crate::types::{
    LogSettings, OffsetSpec, PartitionInfo, QueueInfo, QueueSettings, Route, Source, Start,
    SubscriberStat, Target, TopicInfo,
};
