//! A radix tree over the bytes of path prefixes: the routes of one host pattern, found
//! in time that depends on the path's length, not on how many routes the host has.
//!
//! Each node is reached by the bytes on its edge (its `label`) and holds the entries
//! whose prefix ends exactly there, in insertion (config) order. A lookup walks down the
//! path once, byte-wise — `/api` is a prefix of `/api.json` and `/apix`, as with nginx's
//! prefix `location`s, not segment-wise — and keeps the deepest node where an entry is
//! accepted: the longest matching prefix. Built once per generation; a lookup never
//! allocates.

/// Entries (indices the caller gives meaning to) keyed by byte-string prefixes.
#[derive(Debug)]
pub(super) struct PrefixTrie {
    /// `nodes[0]` is the root, with an empty label.
    nodes: Vec<Node>,
}

#[derive(Debug, Default)]
struct Node {
    /// The bytes from the parent to this node (empty only at the root).
    label: Box<[u8]>,
    /// Entries whose prefix ends here, in insertion order.
    entries: Vec<u32>,
    /// First byte of each child's label, ascending (children's first bytes differ).
    child_bytes: Vec<u8>,
    /// `nodes` index of each child, in the order of `child_bytes`.
    children: Vec<u32>,
}

impl Default for PrefixTrie {
    fn default() -> Self {
        PrefixTrie {
            nodes: vec![Node::default()],
        }
    }
}

impl PrefixTrie {
    /// Adds `entry` under `prefix`, after any entries already there.
    pub fn insert(&mut self, prefix: &[u8], entry: u32) {
        let mut at = 0;
        let mut rest = prefix;
        loop {
            let Some(&first) = rest.first() else {
                self.nodes[at].entries.push(entry);
                return;
            };
            let node = &self.nodes[at];
            let slot = node.child_bytes.binary_search(&first);
            let Ok(slot) = slot else {
                let insert_at = slot.unwrap_or_else(|i| i);
                let id = self.push(Node {
                    label: rest.into(),
                    entries: vec![entry],
                    ..Node::default()
                });
                let node = &mut self.nodes[at];
                node.child_bytes.insert(insert_at, first);
                node.children.insert(insert_at, id);
                return;
            };
            let child = node.children[slot] as usize;
            let label = &self.nodes[child].label;
            let common = label.iter().zip(rest).take_while(|(a, b)| a == b).count();
            if common < label.len() {
                // Split the edge: a new node for the shared part, the old child below it.
                let (shared, tail) = label.split_at(common);
                let mid = Node {
                    label: shared.into(),
                    child_bytes: vec![tail[0]],
                    children: vec![child as u32],
                    ..Node::default()
                };
                let tail: Box<[u8]> = tail.into();
                self.nodes[child].label = tail;
                let mid = self.push(mid);
                self.nodes[at].children[slot] = mid;
                at = mid as usize;
            } else {
                at = child;
            }
            rest = &rest[common..];
        }
    }

    fn push(&mut self, node: Node) -> u32 {
        // A table holds at most as many nodes as twice its routes, far below u32::MAX.
        let id = self.nodes.len() as u32;
        self.nodes.push(node);
        id
    }

    /// The first entry `accept`ed at the longest prefix of `path` that has one.
    pub fn longest(&self, path: &[u8], mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut node = &self.nodes[0];
        let mut rest = path;
        let mut best = None;
        loop {
            if let Some(&e) = node.entries.iter().find(|&&e| accept(e)) {
                best = Some(e);
            }
            let Some(&first) = rest.first() else {
                return best;
            };
            let Ok(slot) = node.child_bytes.binary_search(&first) else {
                return best;
            };
            let child = &self.nodes[node.children[slot] as usize];
            let Some(after) = rest.strip_prefix(&*child.label) else {
                return best;
            };
            rest = after;
            node = child;
        }
    }

    /// How many entries the tree holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nodes.iter().map(|n| n.entries.len()).sum()
    }
}
