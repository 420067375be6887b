// COBS framing, CRC, sequence numbers and link counters over the hardware serial port
// (docs/protocol.md sections 1-3). Main-loop only: never call from an ISR.
#pragma once
#include <stdint.h>

struct LinkCounters {
  uint16_t crc_errors, cobs_errors, lost, tx_dropped;
};
extern LinkCounters link_counters;

typedef void (*PacketHandler)(uint8_t type, uint8_t seq, const uint8_t* body, uint8_t n);

void link_begin(uint32_t baud);
// Read what the UART has; call `handler` for every packet that passes COBS and CRC checks.
void link_poll(PacketHandler handler);
// Free bytes in the UART transmit buffer.
uint8_t link_tx_room();
// Frame and send type|seq|body|crc; returns false (and counts tx_dropped) when it does not fit
// and `may_drop`, else waits for room.
bool link_send(uint8_t type, const uint8_t* body, uint8_t n, bool may_drop = false);
// Encoded size on the wire of a packet with an n-byte body (delimiter included).
static inline uint8_t link_wire_size(uint8_t n) { return n + 4 + 2; }
static inline void sat_inc(uint16_t& c) { if (c != 0xFFFF) c++; }
