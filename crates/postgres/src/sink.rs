//! [`PieceSink`]: the row sink of a PostgreSQL target. Rows are encoded as
//! binary COPY into a buffer; each full buffer (a piece) goes to the writer
//! through a bounded channel, so memory stays bounded however large the
//! chunk is.

use bytes::Bytes;
use mssql_pg_migrate_dialect::sink::{FieldError, RowSink, WriterGone};
use tokio::sync::mpsc;

use crate::copy::CopyEncoder;

/// Encodes rows as binary COPY and sends the stream to a writer in pieces.
#[derive(Debug)]
pub struct PieceSink {
    encoder: CopyEncoder,
    pieces: mpsc::Sender<Bytes>,
    piece_bytes: usize,
    sent_bytes: u64,
}

impl PieceSink {
    pub fn new(pieces: mpsc::Sender<Bytes>, piece_bytes: usize) -> Self {
        PieceSink {
            encoder: CopyEncoder::with_capacity(piece_bytes + piece_bytes / 4),
            pieces,
            piece_bytes,
            sent_bytes: 0,
        }
    }

    async fn flush(&mut self) -> Result<(), WriterGone> {
        let piece = self.encoder.take();
        self.sent_bytes += piece.len() as u64;
        self.pieces.send(Bytes::from(piece)).await.map_err(|_| WriterGone)
    }

    /// Ends the COPY stream and sends what is left (at least the trailer),
    /// handing over the buffer itself rather than allocating its successor.
    /// Returns the bytes sent in all.
    pub async fn finish(self) -> Result<u64, WriterGone> {
        let PieceSink { mut encoder, pieces, sent_bytes, .. } = self;
        encoder.finish();
        let last = encoder.into_bytes();
        let total = sent_bytes + last.len() as u64;
        pieces.send(Bytes::from(last)).await.map_err(|_| WriterGone)?;
        Ok(total)
    }
}

impl RowSink for PieceSink {
    type Encoder = CopyEncoder;

    #[inline]
    fn encoder(&mut self) -> &mut CopyEncoder {
        &mut self.encoder
    }

    #[inline]
    async fn row_done(&mut self) -> Result<(), WriterGone> {
        if self.encoder.len() >= self.piece_bytes { self.flush().await } else { Ok(()) }
    }

    #[inline]
    async fn field(&mut self, bytes: &[u8]) -> Result<(), FieldError> {
        if bytes.len() <= self.piece_bytes {
            return self.encoder.raw(bytes).map_err(FieldError::Encode);
        }
        self.begin_field(bytes.len())?;
        for part in bytes.chunks(self.piece_bytes) {
            self.field_part(part).await?;
        }
        Ok(())
    }

    fn begin_field(&mut self, len: usize) -> Result<(), FieldError> {
        self.encoder.field_length(len).map_err(FieldError::Encode)
    }

    async fn field_part(&mut self, part: &[u8]) -> Result<(), FieldError> {
        self.encoder.extend(part);
        if self.encoder.len() >= self.piece_bytes {
            self.flush().await.map_err(|WriterGone| FieldError::WriterGone)?;
        }
        Ok(())
    }

    fn takes_copy_rows(&self) -> bool {
        true
    }

    /// Copies `bytes` into the piece, passing each full piece on, so no
    /// piece outgrows `piece_bytes` however large a row is.
    #[inline]
    async fn copy_rows(&mut self, mut bytes: &[u8]) -> Result<(), FieldError> {
        loop {
            let room = self.piece_bytes.saturating_sub(self.encoder.len());
            if bytes.len() < room {
                self.encoder.extend(bytes);
                return Ok(());
            }
            let (filling, rest) = bytes.split_at(room);
            self.encoder.extend(filling);
            self.flush().await.map_err(|WriterGone| FieldError::WriterGone)?;
            if rest.is_empty() {
                return Ok(());
            }
            bytes = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use mssql_pg_migrate_dialect::sink::CellEncoder as _;

    use super::*;

    #[tokio::test]
    async fn pieces_concatenate_to_one_copy_stream_and_count_every_byte() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut sink = PieceSink::new(tx, 100);
        let mut whole = CopyEncoder::new();
        for i in 0..50 {
            for enc in [sink.encoder(), &mut whole] {
                enc.begin_row(2);
                enc.int4(i);
                enc.text("twenty bytes of text").unwrap();
            }
            sink.row_done().await.unwrap();
        }
        let sent = sink.finish().await.unwrap();
        whole.finish();
        let mut pieces = Vec::new();
        while let Some(p) = rx.recv().await {
            pieces.push(p);
        }
        assert!(pieces.len() > 10, "small pieces: {}", pieces.len());
        assert!(pieces[..pieces.len() - 1].iter().all(|p| p.len() >= 100));
        let joined: Vec<u8> = pieces.concat();
        assert_eq!(joined, whole.into_bytes());
        assert_eq!(sent, joined.len() as u64);
    }

    #[tokio::test]
    async fn a_field_larger_than_a_piece_streams_in_pieces_of_bounded_size() {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut sink = PieceSink::new(tx, 1000);
        let big: Vec<u8> = (0..10_500u32).map(|i| (i % 251) as u8).collect();
        let mut whole = CopyEncoder::new();
        sink.encoder().begin_row(3);
        whole.begin_row(3);
        for enc in [sink.encoder(), &mut whole] {
            enc.int4(7);
        }
        sink.field(&big).await.unwrap();
        whole.raw(&big).unwrap();
        sink.field(b"small").await.unwrap();
        whole.raw(b"small").unwrap();
        sink.row_done().await.unwrap();
        sink.finish().await.unwrap();
        whole.finish();
        let mut pieces = Vec::new();
        while let Some(p) = rx.recv().await {
            pieces.push(p);
        }
        assert!(pieces.len() >= 10, "{} pieces", pieces.len());
        assert!(pieces.iter().all(|p| p.len() <= 2000), "{:?}", pieces.iter().map(|p| p.len()).collect::<Vec<_>>());
        assert_eq!(pieces.concat(), whole.into_bytes(), "the same COPY stream as one buffer would give");
    }

    #[tokio::test]
    async fn copy_rows_pass_on_in_full_pieces_and_end_as_one_stream() {
        let (tx, mut rx) = mpsc::channel(1024);
        let mut sink = PieceSink::new(tx, 1000);
        let mut whole = CopyEncoder::new();
        let mut rows = CopyEncoder::with_capacity(0);
        rows.take();
        for i in 0..40 {
            for enc in [&mut whole, &mut rows] {
                enc.begin_row(2);
                enc.int4(i);
                enc.text(&"y".repeat(i as usize * 10)).unwrap();
            }
        }
        let rows = rows.into_bytes();
        // In uneven parts, one of them larger than a piece.
        for part in [&rows[..3], &rows[3..2500], &rows[2500..2600], &rows[2600..]] {
            sink.copy_rows(part).await.unwrap();
        }
        sink.finish().await.unwrap();
        whole.finish();
        let mut pieces = Vec::new();
        while let Some(p) = rx.recv().await {
            pieces.push(p);
        }
        let lengths: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert!(lengths[..lengths.len() - 1].iter().all(|&l| l == 1000), "{lengths:?}");
        assert_eq!(pieces.concat(), whole.into_bytes());
    }

    #[tokio::test]
    async fn a_vanished_writer_stops_the_reader() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut sink = PieceSink::new(tx, 1);
        sink.encoder().begin_row(1);
        sink.encoder().int8(1);
        assert_eq!(sink.row_done().await, Err(WriterGone));
    }
}
