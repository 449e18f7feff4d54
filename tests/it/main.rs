
mod registry;
