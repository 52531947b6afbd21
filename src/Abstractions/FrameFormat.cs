namespace OrleansProtocol;

/// <summary>How a listener cuts its byte stream into frames.</summary>
public enum FramingKind
{
    /// <summary>No framing: <c>DataReceived</c> gets bytes as they arrive, chunked arbitrarily (asyncio semantics).</summary>
    Raw = 0,

    /// <summary>Each frame is preceded by its length, an unsigned integer of 1, 2, 4 or 8 bytes.</summary>
    LengthPrefixed = 1,

    /// <summary>Lines ending in <c>\n</c>; a <c>\r</c> before it is dropped too, so <c>\r\n</c> works.</summary>
    Line = 2,

    /// <summary>Frames ending in an arbitrary delimiter, which is not part of the frame.</summary>
    Delimited = 3,

    /// <summary>
    /// Frames cut by the listener's own <c>IFrameDecoder</c> (set in code: <c>FramingOptions.Decoder</c>); the grain
    /// writes encoded frames with <c>Write</c>.
    /// </summary>
    Custom = 4,
}

/// <summary>
/// A listener's framing, as the gateway decodes it and the grain's <c>WriteFrame</c> encodes it. Travels in
/// <see cref="ConnectionInfo.Framing"/>.
/// </summary>
[GenerateSerializer, Immutable, Alias("OrleansProtocol.FrameFormat")]
public sealed record FrameFormat
{
    /// <summary>Raw bytes, no framing.</summary>
    public static readonly FrameFormat Raw = new();

    /// <summary>The kind of framing.</summary>
    [Id(0)]
    public FramingKind Kind { get; init; }

    /// <summary>For <see cref="FramingKind.LengthPrefixed"/>: bytes in the length prefix, 1, 2, 4 or 8.</summary>
    [Id(1)]
    public int PrefixLength { get; init; } = 4;

    /// <summary>For <see cref="FramingKind.LengthPrefixed"/>: true for network order (struct <c>!L</c>), false for little-endian (<c>&lt;L</c>).</summary>
    [Id(2)]
    public bool BigEndian { get; init; } = true;

    /// <summary>
    /// For <see cref="FramingKind.LengthPrefixed"/>: added to the prefix's value to get the body's length. Use
    /// <c>-PrefixLength</c> for a length that counts the prefix itself (or more, for headers that count themselves).
    /// </summary>
    [Id(3)]
    public int LengthAdjustment { get; init; }

    /// <summary>For <see cref="FramingKind.Delimited"/>: the delimiter (at least one byte).</summary>
    [Id(4)]
    public byte[]? Delimiter { get; init; }

    /// <summary>
    /// The largest frame body accepted, in bytes. A length prefix announcing more, or that many bytes without a
    /// delimiter, closes the connection with <see cref="ConnectionCloseReason.FrameTooLarge"/> before the body is buffered.
    /// For <see cref="FramingKind.Custom"/>, the most a frame may take of the stream, headers included.
    /// </summary>
    [Id(5)]
    public int MaxFrameSize { get; init; } = 1024 * 1024;
}
