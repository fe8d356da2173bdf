//! Built-in plugins: validators `required_tags` and `status`, mapper `tags`.

pub mod required_tags;
pub mod status;
pub mod tags_mapper;

pub use required_tags::RequiredTags;
pub use status::StatusFilter;
pub use tags_mapper::TagsMapper;
