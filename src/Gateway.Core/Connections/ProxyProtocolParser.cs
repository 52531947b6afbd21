using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Text;

namespace OrleansProtocol.Gateway.Connections;

/// <summary>What <see cref="ProxyProtocolParser.TryParse"/> found.</summary>
internal enum ProxyParseStatus
{
    /// <summary>A complete header; <see cref="ProxyHeader"/> holds it.</summary>
    Done,

    /// <summary>Not a complete header yet.</summary>
    NeedMoreData,

    /// <summary>Not a valid PROXY protocol header.</summary>
    Invalid,
}

/// <summary>The addresses a PROXY header carries; null for LOCAL (v2) or UNKNOWN (v1): keep the socket's own.</summary>
internal readonly record struct ProxyHeader(IPEndPoint? Source, IPEndPoint? Destination);

/// <summary>
/// The HAProxy PROXY protocol, versions 1 (text) and 2 (binary), as sent by load balancers in front of the gateway so
/// the protocol sees the client's own address. Only the header is parsed; nothing after it is touched.
/// </summary>
internal static class ProxyProtocolParser
{
    private static readonly byte[] V2Signature = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
    private static readonly byte[] V1Prefix = "PROXY "u8.ToArray();

    // The spec's limits: a v1 line is at most 107 bytes; a v2 header's addresses and TLVs are bounded here at 1 KiB.
    private const int V1MaxLength = 107;
    private const int V2MaxPayload = 1024;

    public static ProxyParseStatus TryParse(ReadOnlySequence<byte> buffer, out ProxyHeader header, out long consumed)
    {
        header = default;
        consumed = 0;
        Span<byte> start = stackalloc byte[16];
        var available = (int)Math.Min(buffer.Length, 16);
        buffer.Slice(0, available).CopyTo(start);
        if (StartsLike(start[..available], V2Signature))
        {
            return available < 16 ? ProxyParseStatus.NeedMoreData : ParseV2(buffer, start, ref header, ref consumed);
        }

        if (StartsLike(start[..available], V1Prefix))
        {
            return available < V1Prefix.Length ? ProxyParseStatus.NeedMoreData : ParseV1(buffer, ref header, ref consumed);
        }

        return ProxyParseStatus.Invalid;
    }

    /// <summary>True when what is there so far agrees with <paramref name="expected"/> (so more bytes may complete it).</summary>
    private static bool StartsLike(ReadOnlySpan<byte> data, ReadOnlySpan<byte> expected) =>
        data.Length > 0 && expected[..Math.Min(data.Length, expected.Length)].SequenceEqual(data[..Math.Min(data.Length, expected.Length)]);

    private static ProxyParseStatus ParseV1(ReadOnlySequence<byte> buffer, ref ProxyHeader header, ref long consumed)
    {
        var window = buffer.Slice(0, Math.Min(buffer.Length, V1MaxLength));
        var end = window.PositionOf((byte)'\n');
        if (end is null)
        {
            return buffer.Length >= V1MaxLength ? ProxyParseStatus.Invalid : ProxyParseStatus.NeedMoreData;
        }

        var lineLength = window.Slice(0, end.Value).Length;
        var line = Encoding.ASCII.GetString(window.Slice(0, lineLength).ToArray());
        if (!line.EndsWith('\r'))
        {
            return ProxyParseStatus.Invalid;
        }

        var parts = line[..^1].Split(' ');
        consumed = lineLength + 1;
        if (parts is ["PROXY", "UNKNOWN", ..])
        {
            return ProxyParseStatus.Done;
        }

        if (parts is not ["PROXY", "TCP4" or "TCP6", var source, var destination, var sourcePort, var destinationPort]
            || !IPAddress.TryParse(source, out var sourceAddress)
            || !IPAddress.TryParse(destination, out var destinationAddress)
            || !ushort.TryParse(sourcePort, out var sp)
            || !ushort.TryParse(destinationPort, out var dp)
            || (parts[1] == "TCP4") != (sourceAddress.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork))
        {
            consumed = 0;
            return ProxyParseStatus.Invalid;
        }

        header = new ProxyHeader(new IPEndPoint(sourceAddress, sp), new IPEndPoint(destinationAddress, dp));
        return ProxyParseStatus.Done;
    }

    private static ProxyParseStatus ParseV2(ReadOnlySequence<byte> buffer, ReadOnlySpan<byte> start, ref ProxyHeader header, ref long consumed)
    {
        var versionCommand = start[12];
        var family = start[13];
        var length = BinaryPrimitives.ReadUInt16BigEndian(start[14..16]);
        if (versionCommand >> 4 != 2 || (versionCommand & 0x0F) > 1 || length > V2MaxPayload)
        {
            return ProxyParseStatus.Invalid;
        }

        if (buffer.Length < 16 + length)
        {
            return ProxyParseStatus.NeedMoreData;
        }

        consumed = 16 + length;
        if ((versionCommand & 0x0F) == 0)
        {
            // LOCAL: a health check from the proxy itself; keep the socket's addresses.
            return ProxyParseStatus.Done;
        }

        var payload = buffer.Slice(16, length).ToArray();
        switch (family)
        {
            case 0x11 when payload.Length >= 12:
                header = new ProxyHeader(
                    new IPEndPoint(new IPAddress(payload.AsSpan(0, 4)), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(8, 2))),
                    new IPEndPoint(new IPAddress(payload.AsSpan(4, 4)), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(10, 2))));
                return ProxyParseStatus.Done;
            case 0x21 when payload.Length >= 36:
                header = new ProxyHeader(
                    new IPEndPoint(new IPAddress(payload.AsSpan(0, 16)), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(32, 2))),
                    new IPEndPoint(new IPAddress(payload.AsSpan(16, 16)), BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(34, 2))));
                return ProxyParseStatus.Done;
            case 0x00:
                // UNSPEC: addresses unknown; keep the socket's.
                return ProxyParseStatus.Done;
            default:
                consumed = 0;
                return ProxyParseStatus.Invalid;
        }
    }
}
