//! The TDS PRELOGIN exchange, reduced to the one answer the connector needs
//! before it lets tiberius log in: whether the server offers TLS at all.
//!
//! tiberius 0.13 answers a server that says `ENCRYPT_NOT_SUP` to a client
//! that said `ENCRYPT_OFF` by starting a TLS handshake anyway, which such a
//! server never completes, so `encrypt: false` against a server without TLS
//! stalled until the handshake timeout. Asking first lets the connector
//! choose: TLS for the login when the server has it (as `Encrypt=false`
//! means for other drivers), clear text only when it has none.
//!
//! The packet code is pure; [`server_offers_tls`] does the one round trip.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PRELOGIN: u8 = 0x12;
const TABULAR_RESULT: u8 = 0x04;
const OPTION_VERSION: u8 = 0x00;
const OPTION_ENCRYPTION: u8 = 0x01;
const TERMINATOR: u8 = 0xff;
const HEADER_LEN: usize = 8;

/// The server's `ENCRYPTION` answer (MS-TDS 2.2.6.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEncryption {
    /// `ENCRYPT_OFF`: TLS for the login only, unless the client asks for more.
    Off,
    /// `ENCRYPT_ON`.
    On,
    /// `ENCRYPT_NOT_SUP`: the server has no certificate; nothing is encrypted.
    NotSupported,
    /// `ENCRYPT_REQ`: the server insists on TLS.
    Required,
}

/// A PRELOGIN request offering `ENCRYPT_OFF`, with a zero client version.
pub fn request() -> Vec<u8> {
    // Options: VERSION (6 bytes) and ENCRYPTION (1 byte), then the terminator.
    let options_len = 5 + 5 + 1;
    let payload_len = options_len + 6 + 1;
    let total = HEADER_LEN + payload_len;
    let mut packet = Vec::with_capacity(total);
    let [len_hi, len_lo] = u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes();
    // Type, status (end of message), length, SPID, packet id, window.
    packet.extend_from_slice(&[PRELOGIN, 0x01, len_hi, len_lo, 0, 0, 1, 0]);
    let version_at = options_len as u16;
    packet.push(OPTION_VERSION);
    packet.extend_from_slice(&version_at.to_be_bytes());
    packet.extend_from_slice(&6u16.to_be_bytes());
    packet.push(OPTION_ENCRYPTION);
    packet.extend_from_slice(&(version_at + 6).to_be_bytes());
    packet.extend_from_slice(&1u16.to_be_bytes());
    packet.push(TERMINATOR);
    packet.extend_from_slice(&[0; 6]);
    packet.push(0x00); // ENCRYPT_OFF
    packet
}

/// Reads the `ENCRYPTION` option of a PRELOGIN response packet.
///
/// # Errors
/// What is wrong with the packet: not a response, cut short, or without
/// the option.
pub fn parse_response(packet: &[u8]) -> Result<ServerEncryption, String> {
    let header = packet.get(..HEADER_LEN).ok_or("the PRELOGIN response is shorter than its header")?;
    if header[0] != TABULAR_RESULT {
        return Err(format!("the server answered PRELOGIN with packet type {:#04x}", header[0]));
    }
    let payload = &packet[HEADER_LEN..];
    let mut at = 0;
    loop {
        let token = *payload.get(at).ok_or("the PRELOGIN options are not terminated")?;
        if token == TERMINATOR {
            return Err("the server's PRELOGIN response has no ENCRYPTION option".into());
        }
        let field = payload.get(at + 1..at + 5).ok_or("a PRELOGIN option is cut short")?;
        let offset = usize::from(u16::from_be_bytes([field[0], field[1]]));
        let length = u16::from_be_bytes([field[2], field[3]]);
        if token == OPTION_ENCRYPTION {
            if length < 1 {
                return Err("the ENCRYPTION option is empty".into());
            }
            return match payload.get(offset) {
                Some(0x00) => Ok(ServerEncryption::Off),
                Some(0x01) => Ok(ServerEncryption::On),
                Some(0x02) => Ok(ServerEncryption::NotSupported),
                Some(0x03) => Ok(ServerEncryption::Required),
                Some(other) => Err(format!("unknown ENCRYPTION value {other:#04x}")),
                None => Err("the ENCRYPTION option points past the packet".into()),
            };
        }
        at += 5;
    }
}

/// Asks the server at `address` whether it offers TLS, on a connection of
/// its own that is closed afterwards.
///
/// # Errors
/// The I/O error, a timeout, or a malformed answer, as text.
pub async fn server_offers_tls(address: &str, timeout: Duration) -> Result<ServerEncryption, String> {
    let exchange = async {
        let mut tcp = TcpStream::connect(address).await.map_err(|e| e.to_string())?;
        tcp.write_all(&request()).await.map_err(|e| e.to_string())?;
        let mut header = [0u8; HEADER_LEN];
        tcp.read_exact(&mut header).await.map_err(|e| e.to_string())?;
        let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut packet = header.to_vec();
        packet.resize(total.max(HEADER_LEN), 0);
        tcp.read_exact(&mut packet[HEADER_LEN..]).await.map_err(|e| e.to_string())?;
        parse_response(&packet)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no PRELOGIN answer within {} s", timeout.as_secs()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_offers_encrypt_off_in_a_well_formed_packet() {
        let p = request();
        assert_eq!(p.len(), 26);
        assert_eq!(&p[..8], &[0x12, 0x01, 0, 26, 0, 0, 1, 0]);
        // VERSION at 11, 6 bytes; ENCRYPTION at 17, 1 byte; terminator.
        assert_eq!(&p[8..19], &[0x00, 0, 11, 0, 6, 0x01, 0, 17, 0, 1, 0xff]);
        assert_eq!(p[8 + 17], 0x00);
    }

    fn response(options: &[(u8, &[u8])]) -> Vec<u8> {
        let list_len = options.len() * 5 + 1;
        let mut list = Vec::new();
        let mut data = Vec::new();
        for (token, value) in options {
            list.push(*token);
            list.extend_from_slice(&((list_len + data.len()) as u16).to_be_bytes());
            list.extend_from_slice(&(value.len() as u16).to_be_bytes());
            data.extend_from_slice(value);
        }
        list.push(0xff);
        let total = 8 + list.len() + data.len();
        let mut p = vec![0x04, 0x01, 0, total as u8, 0, 0, 1, 0];
        p.extend(list);
        p.extend(data);
        p
    }

    #[test]
    fn every_encryption_answer_is_read() {
        for (byte, expected) in [
            (0u8, ServerEncryption::Off),
            (1, ServerEncryption::On),
            (2, ServerEncryption::NotSupported),
            (3, ServerEncryption::Required),
        ] {
            let p = response(&[(0x00, &[16, 0, 0x10, 0, 0, 0]), (0x01, &[byte]), (0x04, &[0])]);
            assert_eq!(parse_response(&p), Ok(expected), "{byte}");
        }
    }

    #[test]
    fn malformed_answers_say_what_is_wrong() {
        assert!(parse_response(&[0x04, 1]).unwrap_err().contains("header"));
        let mut p = response(&[(0x01, &[2])]);
        p[0] = 0x12;
        assert!(parse_response(&p).unwrap_err().contains("packet type 0x12"));
        assert!(parse_response(&response(&[(0x00, &[0; 6])])).unwrap_err().contains("no ENCRYPTION"));
        assert!(parse_response(&response(&[(0x01, &[9])])).unwrap_err().contains("0x09"));
        let cut = &response(&[(0x01, &[2])])[..10];
        assert!(parse_response(cut).is_err());
    }
}
