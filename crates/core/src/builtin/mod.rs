//! Built-in plugins: validators `required_tags` and `status`, mapper `tags`, the `[tag_keys]`
//! section they share, and the `memory` state store ([`crate::state::MemoryState`]).

pub mod memory_state;
pub mod required_tags;
pub mod status;
pub mod tag_keys;
pub mod tags_mapper;

pub use memory_state::MemoryStateConfig;
pub use required_tags::RequiredTags;
pub use status::StatusFilter;
pub use tag_keys::TagKeys;
pub use tags_mapper::TagsMapper;
