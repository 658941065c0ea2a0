/* Avro's long (zig-zag, then base-128 varint), shared by the router's C parts: buf needs 10 bytes. */
#ifndef EVBUS_AVRO_H
#define EVBUS_AVRO_H

static inline int avro_zigzag(unsigned char *buf, long long n) {
    unsigned long long z = ((unsigned long long)n << 1) ^ (unsigned long long)(n >> 63);
    int len = 0;
    while (z > 0x7F) {
        buf[len++] = (unsigned char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    buf[len++] = (unsigned char)z;
    return len;
}

#endif
