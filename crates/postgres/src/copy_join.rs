//! Joining a server's COPY OUT rows into fewer, larger `CopyData` messages,
//! on their way from the socket to the driver.
//!
//! PostgreSQL sends each row of `COPY … TO STDOUT` as its own `CopyData`
//! message, and tokio-postgres parses, reference-counts and hands out each
//! message on its own: at 0.25 of the benchmark's data set that per-row
//! cost was about a sixth of the tool's CPU (docs/BENCHMARKS.md, issue 18).
//! The protocol gives a `CopyData` boundary no meaning, and every reader of
//! our COPY output takes the bytes as one stream ([`crate::copy_out`] does
//! not assume a message holds whole rows). So [`CopyJoiner`] rewrites each
//! run of consecutive `CopyData` messages that sit whole in the read buffer
//! as one message of up to [`JOINED_PAYLOAD_BYTES`]: the same bytes, less
//! the inner headers. Every other message passes as it came.
//!
//! It only rewrites what it can frame: a connection whose first client
//! message is a plain startup message, or an `SSLRequest` the server
//! refused (`N`). Once a server says `S`, the bytes are TLS records and pass
//! untouched to the end; so does anything the joiner does not recognise.
//! Only `CopyData` after a `CopyOutResponse` is joined (a notice between
//! rows does not end the COPY): in a `CopyBoth` stream (replication) each
//! message has a meaning of its own.
//!
//! Sans-IO: the socket wrapper in [`crate::socket`] feeds it what it has
//! read and copies out what it emits.
//!
//! ```
//! use mssql_pg_migrate_postgres::copy_join::CopyJoiner;
//!
//! let startup = [0, 0, 0, 8, 0, 3, 0, 0];
//! let mut joiner = CopyJoiner::default();
//! joiner.client_wrote(&startup);
//! // CopyOutResponse (text, no columns), two rows, CopyDone.
//! let server = b"H\0\0\0\x07\0\0\0d\0\0\0\x06a\nd\0\0\0\x06b\nc\0\0\0\x04";
//! let mut out = Vec::new();
//! let step = joiner.step(server, usize::MAX, |bytes| out.extend_from_slice(bytes));
//! assert_eq!(step.consumed, server.len());
//! assert_eq!(out, b"H\0\0\0\x07\0\0\0d\0\0\0\x08a\nb\nc\0\0\0\x04");
//! ```

use postgres_protocol::message::backend::Header;

/// The most payload one joined message carries. The driver grows its read
/// buffer to hold a whole message; 64 KiB already makes the per-message
/// cost small even for rows of a few hundred bytes.
pub const JOINED_PAYLOAD_BYTES: usize = 64 << 10;

const HEADER: usize = 5;
const COPY_DATA: u8 = b'd';
const COPY_OUT_RESPONSE: u8 = b'H';
/// Messages a server may send at any time, within a COPY too: notice,
/// notification, parameter status.
const ASYNCHRONOUS: [u8; 3] = [b'N', b'A', b'S'];
/// The protocol code of an `SSLRequest` (1234 in the upper 16 bits, 5679 in the lower).
const SSL_REQUEST_CODE: [u8; 4] = [0x04, 0xd2, 0x16, 0x2f];
/// The major protocol version 3 of a startup message.
const PROTOCOL_3: [u8; 2] = [0, 3];

/// How the server's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The client has not written yet.
    Undecided,
    /// The client asked for TLS; the server's one-byte answer comes next.
    AwaitingSslAnswer,
    /// Plain protocol messages, framed from here.
    Framing,
    /// TLS records or anything not recognised: passed on untouched.
    Passthrough,
}

/// Joins runs of `CopyData` messages; see the [module docs](self).
#[derive(Debug)]
pub struct CopyJoiner {
    mode: Mode,
    /// Inside a `CopyOutResponse`'s stream of `CopyData`.
    in_copy_out: bool,
    /// Bytes of the current message still to pass on as they are.
    verbatim: usize,
    /// The joined message's header, and how much of it is already emitted.
    header: [u8; HEADER],
    header_emitted: usize,
    /// Payload bytes of the joined message's current part still to copy.
    part_left: usize,
    /// Further parts of the joined message, each behind a header to skip.
    parts_after: usize,
}

impl Default for CopyJoiner {
    fn default() -> Self {
        CopyJoiner {
            mode: Mode::Undecided,
            in_copy_out: false,
            verbatim: 0,
            header: [0; HEADER],
            header_emitted: HEADER,
            part_left: 0,
            parts_after: 0,
        }
    }
}

/// What one [`CopyJoiner::step`] did with its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Input bytes used up; the caller drops them and keeps the rest.
    pub consumed: usize,
    /// Bytes handed to `emit`.
    pub produced: usize,
}

impl CopyJoiner {
    /// Tells the joiner what the client wrote; the first write decides
    /// whether the server's bytes can be framed.
    pub fn client_wrote(&mut self, bytes: &[u8]) {
        if self.mode != Mode::Undecided {
            return;
        }
        self.mode = match bytes.get(4..8) {
            Some(code) if code == SSL_REQUEST_CODE => Mode::AwaitingSslAnswer,
            Some(code) if code[..2] == PROTOCOL_3 => Mode::Framing,
            _ => Mode::Passthrough,
        };
    }

    /// The server's bytes end here (the socket closed): what is left
    /// passes on as it is, for the driver to report.
    pub fn input_ended(&mut self) {
        self.mode = Mode::Passthrough;
    }

    /// Turns the start of `input` (the server's bytes read and not yet
    /// consumed) into at most `room` bytes, handed to `emit` in order.
    /// Consumes nothing when a message header is cut short: read more and
    /// call again with the same bytes first.
    pub fn step(&mut self, input: &[u8], room: usize, mut emit: impl FnMut(&[u8])) -> Step {
        let mut at = 0;
        let mut produced = 0;
        while produced < room && at < input.len() {
            let left = room - produced;
            match self.mode {
                Mode::Undecided | Mode::Passthrough => {
                    let n = left.min(input.len() - at);
                    emit(&input[at..at + n]);
                    (at, produced) = (at + n, produced + n);
                }
                Mode::AwaitingSslAnswer => {
                    self.mode = if input[at] == b'N' { Mode::Framing } else { Mode::Passthrough };
                    emit(&input[at..=at]);
                    (at, produced) = (at + 1, produced + 1);
                }
                Mode::Framing if self.header_emitted < HEADER => {
                    let n = left.min(HEADER - self.header_emitted);
                    emit(&self.header[self.header_emitted..self.header_emitted + n]);
                    self.header_emitted += n;
                    produced += n;
                }
                Mode::Framing if self.part_left > 0 => {
                    let n = left.min(self.part_left).min(input.len() - at);
                    emit(&input[at..at + n]);
                    (at, produced, self.part_left) = (at + n, produced + n, self.part_left - n);
                }
                Mode::Framing if self.parts_after > 0 => {
                    // The next part's header, found whole with the run and
                    // kept by the caller since.
                    let Some(payload) = payload_len(&input[at..]) else { break };
                    self.part_left = payload;
                    self.parts_after -= 1;
                    at += HEADER;
                }
                Mode::Framing if self.verbatim > 0 => {
                    let n = left.min(self.verbatim).min(input.len() - at);
                    emit(&input[at..at + n]);
                    (at, produced, self.verbatim) = (at + n, produced + n, self.verbatim - n);
                }
                Mode::Framing => {
                    let rest = &input[at..];
                    let Some(length) = message_len(rest) else {
                        if rest.len() >= HEADER {
                            // Not a message length: no longer ours to frame.
                            self.mode = Mode::Passthrough;
                            continue;
                        }
                        break;
                    };
                    let tag = rest[0];
                    if tag == COPY_DATA && self.in_copy_out {
                        let (parts, payload) = copy_data_run(rest);
                        if parts > 1 {
                            let declared = u32::try_from(payload + 4).unwrap_or(u32::MAX);
                            self.header[0] = COPY_DATA;
                            self.header[1..].copy_from_slice(&declared.to_be_bytes());
                            self.header_emitted = 0;
                            self.part_left = length - HEADER;
                            self.parts_after = parts - 1;
                            at += HEADER;
                            continue;
                        }
                    } else if !ASYNCHRONOUS.contains(&tag) {
                        self.in_copy_out = tag == COPY_OUT_RESPONSE;
                    }
                    self.verbatim = length;
                }
            }
        }
        Step { consumed: at, produced }
    }
}

/// The whole length (tag included) of the message `bytes` starts with, if
/// its header is there and declares a valid length, as the driver frames it.
fn message_len(bytes: &[u8]) -> Option<usize> {
    let header = Header::parse(bytes).ok()??;
    usize::try_from(header.len()).ok().map(|declared| declared + 1)
}

/// The payload length of the `CopyData` message `bytes` starts with.
fn payload_len(bytes: &[u8]) -> Option<usize> {
    message_len(bytes).map(|l| l - HEADER)
}

/// How many whole `CopyData` messages `bytes` starts with, stopping before
/// their joined payload would pass [`JOINED_PAYLOAD_BYTES`] (a first
/// message larger than that stands alone), and their total payload.
fn copy_data_run(bytes: &[u8]) -> (usize, usize) {
    let (mut parts, mut payload, mut at) = (0, 0, 0);
    while let Some(length) = bytes.get(at..).and_then(message_len) {
        let whole = bytes.len() - at >= length;
        if bytes[at] != COPY_DATA || !whole || (parts > 0 && payload + length - HEADER > JOINED_PAYLOAD_BYTES) {
            break;
        }
        parts += 1;
        payload += length - HEADER;
        at += length;
    }
    (parts, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    /// A server's answer to a COPY: CopyOutResponse, rows, CopyDone,
    /// CommandComplete, ReadyForQuery.
    fn copy_answer(rows: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = message(COPY_OUT_RESPONSE, &[1, 0, 0]);
        for row in rows {
            bytes.extend(message(COPY_DATA, row));
        }
        bytes.extend(message(b'c', b""));
        bytes.extend(message(b'C', b"COPY 3\0"));
        bytes.extend(message(b'Z', b"I"));
        bytes
    }

    /// Splits `bytes` into messages (tag, body), checking every length.
    fn messages(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let length = message_len(bytes).expect("a valid header");
            assert!(bytes.len() >= length, "a whole message");
            out.push((bytes[0], bytes[HEADER..length].to_vec()));
            bytes = &bytes[length..];
        }
        out
    }

    /// Runs the joiner over `input` arriving in reads of `read` bytes,
    /// drained in steps of at most `room` bytes, as the socket does.
    fn run(first_write: &[u8], input: &[u8], read: usize, room: usize) -> Vec<u8> {
        let mut joiner = CopyJoiner::default();
        joiner.client_wrote(first_write);
        let (mut buffered, mut next, mut out) = (Vec::new(), 0, Vec::new());
        loop {
            let step = joiner.step(&buffered, room, |b| out.extend_from_slice(b));
            assert!(step.produced <= room);
            buffered.drain(..step.consumed);
            if step.consumed == 0 && step.produced == 0 {
                if next == input.len() {
                    joiner.input_ended();
                    let step = joiner.step(&buffered, usize::MAX, |b| out.extend_from_slice(b));
                    buffered.drain(..step.consumed);
                    assert!(buffered.is_empty());
                    return out;
                }
                let n = read.min(input.len() - next);
                buffered.extend_from_slice(&input[next..next + n]);
                next += n;
            }
        }
    }

    const STARTUP: [u8; 8] = [0, 0, 0, 8, 0, 3, 0, 0];

    #[test]
    fn rows_whole_in_the_buffer_become_one_message_with_the_same_bytes() {
        let rows: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 3 + usize::from(i)]).collect();
        let answer = copy_answer(&rows);
        let joined = messages(&run(&STARTUP, &answer, usize::MAX, usize::MAX));
        let tags: Vec<u8> = joined.iter().map(|m| m.0).collect();
        assert_eq!(tags, b"HdcCZ");
        assert_eq!(joined[1].1, rows.concat());
        assert_eq!(joined[2..], messages(&answer)[4..]);
    }

    #[test]
    fn any_cut_of_the_input_and_any_room_give_the_same_stream_of_bytes() {
        let rows: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i) * 7 % 61]).collect();
        let mut answer = message(b'1', b"");
        answer.extend(message(b'N', b"SNOTICE\0\0"));
        answer.extend(copy_answer(&rows));
        let copy_bytes: Vec<u8> = rows.concat();
        for read in [1, 2, 4, 5, 6, 7, 13, 64, 500, usize::MAX] {
            for room in [1, 3, 5, 8, 100, usize::MAX] {
                let out = run(&STARTUP, &answer, read, room);
                let parts = messages(&out);
                let data: Vec<u8> = parts.iter().filter(|m| m.0 == COPY_DATA).flat_map(|m| m.1.clone()).collect();
                assert_eq!(data, copy_bytes, "read {read}, room {room}");
                let others: Vec<_> = parts.iter().filter(|m| m.0 != COPY_DATA).cloned().collect();
                let expected: Vec<_> = messages(&answer).into_iter().filter(|m| m.0 != COPY_DATA).collect();
                assert_eq!(others, expected, "read {read}, room {room}");
                if read == usize::MAX {
                    assert_eq!(parts.len(), expected.len() + 1, "one joined message when all was read at once");
                }
            }
        }
    }

    #[test]
    fn a_joined_message_stops_at_the_payload_limit_and_a_larger_row_stands_alone() {
        let rows = vec![vec![1u8; 40 << 10], vec![2u8; 40 << 10], vec![3u8; 100 << 10], vec![4u8; 10]];
        let out = run(&STARTUP, &copy_answer(&rows), usize::MAX, usize::MAX);
        let lengths: Vec<usize> = messages(&out).iter().filter(|m| m.0 == COPY_DATA).map(|m| m.1.len()).collect();
        assert_eq!(lengths, [40 << 10, 40 << 10, 100 << 10, 10]);
        let rows = vec![vec![1u8; 30 << 10], vec![2u8; 30 << 10], vec![3u8; 4 << 10], vec![4u8; 10]];
        let out = run(&STARTUP, &copy_answer(&rows), usize::MAX, usize::MAX);
        let lengths: Vec<usize> = messages(&out).iter().filter(|m| m.0 == COPY_DATA).map(|m| m.1.len()).collect();
        assert_eq!(lengths, [64 << 10, 10], "30 + 30 + 4 KiB fill one message; the last row starts the next");
    }

    #[test]
    fn copy_data_outside_a_copy_out_and_tls_pass_untouched() {
        // A notice within a COPY OUT: the rows on either side are joined.
        let mut noticed = message(COPY_OUT_RESPONSE, &[1, 0, 0]);
        for part in [&b"r1"[..], b"r2", b"r3", b"r4"] {
            noticed.extend(message(COPY_DATA, part));
            if part == b"r2" {
                noticed.extend(message(b'N', b"SWARNING\0\0"));
            }
        }
        let parts = messages(&run(&STARTUP, &noticed, usize::MAX, usize::MAX));
        let expected = [(b'H', vec![1, 0, 0]), (COPY_DATA, b"r1r2".to_vec()), (b'N', b"SWARNING\0\0".to_vec())];
        assert_eq!(parts[..3], expected);
        assert_eq!(parts[3], (COPY_DATA, b"r3r4".to_vec()));

        // CopyBothResponse ('W'): replication messages keep their boundaries.
        let mut both = message(b'W', &[0, 0, 0]);
        both.extend(message(COPY_DATA, b"w1"));
        both.extend(message(COPY_DATA, b"k2"));
        assert_eq!(run(&STARTUP, &both, usize::MAX, usize::MAX), both);

        let answer = copy_answer(&[b"a".to_vec(), b"b".to_vec()]);
        let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        let mut accepted = vec![b'S'];
        accepted.extend_from_slice(&answer);
        assert_eq!(run(&ssl_request, &accepted, usize::MAX, usize::MAX), accepted, "after S: TLS records");
        let mut refused = vec![b'N'];
        refused.extend_from_slice(&answer);
        let out = run(&ssl_request, &refused, usize::MAX, usize::MAX);
        assert_eq!(out[0], b'N');
        assert_eq!(messages(&out[1..]).len(), messages(&answer).len() - 1, "after N: framed and joined");
        assert_eq!(run(&[0x16, 3, 1, 0, 0, 0, 0, 0], &answer, usize::MAX, usize::MAX), answer, "direct TLS");
        assert_eq!(run(&[0, 0], &answer, usize::MAX, usize::MAX), answer, "a first write too short to tell");
    }

    #[test]
    fn a_header_cut_short_waits_for_more_and_garbage_passes_through() {
        let mut joiner = CopyJoiner::default();
        joiner.client_wrote(&STARTUP);
        let mut out = Vec::new();
        let step = joiner.step(b"Z\0\0", usize::MAX, |b| out.extend_from_slice(b));
        assert_eq!(step, Step { consumed: 0, produced: 0 }, "nothing until the header is whole");
        let step = joiner.step(b"Z\0\0\0\x05I", usize::MAX, |b| out.extend_from_slice(b));
        assert_eq!((step.consumed, out.as_slice()), (6, &b"Z\0\0\0\x05I"[..]));
        out.clear();
        // A negative length is not a message: the driver gets it as it came.
        let garbage = b"d\xff\xff\xff\xffrest";
        let step = joiner.step(garbage, usize::MAX, |b| out.extend_from_slice(b));
        assert_eq!((step.consumed, out.as_slice()), (garbage.len(), &garbage[..]));
    }
}
