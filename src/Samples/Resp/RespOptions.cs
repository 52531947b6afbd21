namespace OrleansProtocol.Samples.Resp;

/// <summary>Settings of the RESP sample (section <c>Resp</c> of the host's configuration).</summary>
public sealed class RespOptions
{
    internal const string KeyGrainPrefix = "key:";

    /// <summary>
    /// How keys map to keyspace grains: the number of hash slots, each a grain holding its keys (CRC-16 of the key modulo
    /// this, as Redis Cluster maps keys to its 16,384 slots); 0 for a grain per key. Defaults to 8: a pipelined burst
    /// costs one grain call per slot it touches, so fewer slots answer bursts faster (with -P 16 on random keys, 8 slots
    /// gave 1.4× the rate of 64 and 3.6× that of a grain per key), while 8 grains still spread over 8 cores or silos;
    /// raise it for a larger cluster. Measured in <c>docs/performance.md</c>.
    /// </summary>
    public int KeySlots { get; set; } = 8;

    /// <summary>The keyspace grain holding <paramref name="key"/>.</summary>
    public string GrainOf(byte[] key)
    {
        if (KeySlots <= 0)
        {
            return KeyGrainPrefix + RespCommand.Key(key);
        }

        return $"slot:{Crc16(key) % KeySlots}";
    }

    // Redis Cluster's hash: CRC-16/XMODEM of the key.
    private static ushort Crc16(ReadOnlySpan<byte> key)
    {
        ushort crc = 0;
        foreach (var b in key)
        {
            crc ^= (ushort)(b << 8);
            for (var i = 0; i < 8; i++)
            {
                crc = (crc & 0x8000) != 0 ? (ushort)((crc << 1) ^ 0x1021) : (ushort)(crc << 1);
            }
        }

        return crc;
    }
}
