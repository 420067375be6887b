// Wire protocol v1 constants (docs/protocol.md). Shared by every device sketch: the rotarod keeps
// its own copy because the Arduino IDE only compiles files inside the sketch folder.
#pragma once
#include <stdint.h>
#include <string.h>
#include <util/crc16.h>

#define PROTOCOL_VERSION 1
#define MAX_PACKET 128
#define MAX_BODY (MAX_PACKET - 4)
#define MAX_FRAME (MAX_PACKET + 1)  // COBS adds one byte per 254

// host -> board
enum : uint8_t {
  CMD_GET_HELLO = 0x01,
  CMD_HOST_HEARTBEAT = 0x02,
  CMD_SET_CONFIG = 0x03,
  CMD_SET_STREAM = 0x04,
  CMD_RESET_SAFE = 0x05,
  CMD_ZERO_LEVER = 0x06,
  CMD_LOAD_BEGIN = 0x10,
  CMD_LOAD_CHUNK = 0x11,
  CMD_LOAD_COMMIT = 0x12,
  CMD_START_TRIAL = 0x13,
  CMD_STOP_TRIAL = 0x14,
  CMD_ABORT_TRIAL = 0x15,
  CMD_SOFT_EVENT = 0x16,
  CMD_OPEN_VALVE = 0x20,
  CMD_PLAY_TONE = 0x21,
  CMD_SET_TTL = 0x22,
};

// board -> host
enum : uint8_t {
  PKT_HELLO = 0x80,
  PKT_ACK = 0x81,
  PKT_NAK = 0x82,
  PKT_EVENT = 0x83,
  PKT_HEARTBEAT = 0x84,
  PKT_TEXT = 0x85,
  PKT_LEVER = 0x90,
  PKT_FRAME = 0x91,
  PKT_LEVER_ZERO = 0x92,
};

// NAK error codes
enum : uint8_t {
  ERR_BAD_LENGTH = 1,
  ERR_UNKNOWN_TYPE = 2,
  ERR_BAD_VALUE = 3,
  ERR_BUSY = 4,
  ERR_NO_MACHINE = 5,
  ERR_MACHINE_INVALID = 6,
  ERR_MACHINE_TOO_BIG = 7,
  ERR_LOAD_ORDER = 8,
  ERR_MACHINE_CRC = 9,
  ERR_VALVE_CAP = 10,
  ERR_VERSION = 11,
};

// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); check value "123456789" -> 0x29B1.
// avr-libc's _crc_xmodem_update is this polynomial, unreflected; seeded with 0xFFFF it is
// CCITT-FALSE (Python: binascii.crc_hqx(data, 0xFFFF)).
static inline uint16_t crc16(const uint8_t* p, uint16_t n, uint16_t crc = 0xFFFF) {
  while (n--) crc = _crc_xmodem_update(crc, *p++);
  return crc;
}

// Little-endian field access. AVR is little-endian, so memcpy is exact and far cheaper than
// shifting 64-bit values (avr-gcc shifts a uint64_t bit by bit).
static inline void put_u16(uint8_t* p, uint16_t v) { memcpy(p, &v, 2); }
static inline void put_u32(uint8_t* p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put_u64(uint8_t* p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint16_t get_u16(const uint8_t* p) {
  uint16_t v;
  memcpy(&v, p, 2);
  return v;
}
static inline uint32_t get_u32(const uint8_t* p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}
