#include "link.h"

#include <Arduino.h>

#include "protocol.h"

LinkCounters link_counters;
static uint8_t rx_frame[MAX_FRAME];
static uint8_t rx_len;
static bool rx_overflow;
static uint8_t tx_seq;
static bool rx_synced;
static uint8_t rx_expected_seq;

void link_begin(uint32_t baud) { Serial.begin(baud); }

uint8_t link_tx_room() { return (uint8_t)Serial.availableForWrite(); }

// Decode COBS in place; returns the decoded length or -1 on bad stuffing.
static int16_t cobs_decode(uint8_t* buf, uint8_t len) {
  uint8_t in = 0, out = 0;
  while (in < len) {
    uint8_t code = buf[in++];
    if (code == 0 || in + code - 1 > len) return -1;
    for (uint8_t i = 1; i < code; i++) buf[out++] = buf[in++];
    if (code != 0xFF && in < len) buf[out++] = 0;
  }
  return out;
}

static void handle_frame(PacketHandler handler) {
  if (rx_len == 0) return;  // extra delimiters are allowed
  int16_t n = cobs_decode(rx_frame, rx_len);
  if (n < 0) {
    sat_inc(link_counters.cobs_errors);
    return;
  }
  if (n < 4) {
    sat_inc(link_counters.cobs_errors);  // runt
    return;
  }
  uint16_t crc = get_u16(rx_frame + n - 2);
  if (crc16(rx_frame, n - 2) != crc) {
    sat_inc(link_counters.crc_errors);
    return;
  }
  uint8_t seq = rx_frame[1];
  if (rx_synced) {
    uint8_t d = seq - rx_expected_seq;
    for (uint8_t i = 0; i < d; i++) sat_inc(link_counters.lost);
  }
  rx_synced = true;
  rx_expected_seq = seq + 1;
  handler(rx_frame[0], seq, rx_frame + 2, (uint8_t)(n - 4));
}

void link_poll(PacketHandler handler) {
  // Bounded so that a flood of input cannot starve the transmit side of the main loop.
  for (uint8_t budget = 64; budget && Serial.available(); budget--) {
    uint8_t b = Serial.read();
    if (b == 0) {
      if (!rx_overflow) handle_frame(handler);
      rx_len = 0;
      rx_overflow = false;
    } else if (rx_overflow) {
      // discard up to the next delimiter
    } else if (rx_len == MAX_FRAME) {
      rx_overflow = true;
      sat_inc(link_counters.cobs_errors);  // oversize
    } else {
      rx_frame[rx_len++] = b;
    }
  }
}

bool link_send(uint8_t type, const uint8_t* body, uint8_t n, bool may_drop) {
  uint8_t pkt[MAX_PACKET];
  if (n > MAX_BODY) return false;
  pkt[0] = type;
  pkt[1] = tx_seq;
  for (uint8_t i = 0; i < n; i++) pkt[2 + i] = body[i];
  uint8_t len = n + 2;
  put_u16(pkt + len, crc16(pkt, len));
  len += 2;
  if (link_tx_room() < link_wire_size(n)) {
    if (may_drop) {
      sat_inc(link_counters.tx_dropped);
      return false;
    }
  }
  tx_seq++;
  // Streaming COBS: each block is a code byte then the bytes up to the next zero.
  uint8_t start = 0;
  while (start <= len) {
    uint8_t end = start;
    while (end < len && pkt[end] != 0 && end - start < 254) end++;
    Serial.write((uint8_t)(end - start + 1));
    Serial.write(pkt + start, end - start);
    if (end - start == 254 && end < len) {
      start = end;  // 0xFF block: no implied zero
    } else {
      start = end + 1;
    }
  }
  Serial.write((uint8_t)0);
  return true;
}
