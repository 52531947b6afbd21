using System.Buffers;

namespace OrleansProtocol.Framing;

/// <summary>What <see cref="FrameDecoder.TryRead"/> found at the start of the buffer.</summary>
public enum FrameReadStatus
{
    /// <summary>A whole frame.</summary>
    Frame,

    /// <summary>Not a whole frame yet: wait for more bytes.</summary>
    NeedMoreData,

    /// <summary>The frame is larger than <see cref="FrameFormat.MaxFrameSize"/>; nothing of its body needs buffering.</summary>
    TooLarge,

    /// <summary>The frame header is invalid (a length prefix that adjusts to a negative length).</summary>
    Invalid,
}

/// <summary>
/// Cuts a connection's byte stream into frames: the built-in <see cref="FrameDecoder"/>, or a listener's own (the role
/// SuperSocket's pipeline filters and DotNetty's <c>ByteToMessageDecoder</c> play). The gateway makes one per
/// connection and runs it on each read, with the same limits as the built-in framings: the receive rate is timed while
/// it needs more data, and <see cref="FrameReadStatus.TooLarge"/> or <see cref="FrameReadStatus.Invalid"/> close the
/// connection (through the grain's <c>CloseRequested</c>, so the protocol can answer with its own error first).
/// </summary>
/// <remarks>
/// <para>The contract, which the gateway enforces where it can:</para>
/// <list type="bullet">
/// <item>Called with the bytes from the start of the next frame: after <see cref="FrameReadStatus.NeedMoreData"/> the
/// next call starts at the same byte with more behind it, so a decoder may remember how far it has validated.</item>
/// <item>On <see cref="FrameReadStatus.Frame"/>, <c>consumed</c> is at least 1 and the frame lies within those bytes
/// (a decoder that does not make progress is taken as <see cref="FrameReadStatus.Invalid"/>).</item>
/// <item>Decide <see cref="FrameReadStatus.TooLarge"/> from headers, before the body is buffered. As a backstop the
/// gateway closes a connection whose decoder still needs more data with more than <see cref="FrameFormat.MaxFrameSize"/>
/// bytes in hand.</item>
/// <item>Called by one connection's pump at a time; the grain receives a copy of each frame.</item>
/// </list>
/// </remarks>
public interface IFrameDecoder
{
    /// <summary>
    /// Looks for one frame at the start of <paramref name="buffer"/>. On <see cref="FrameReadStatus.Frame"/>,
    /// <paramref name="frame"/> is what the grain receives and <paramref name="consumed"/> the bytes it took.
    /// </summary>
    FrameReadStatus TryRead(ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> frame, out long consumed);

    /// <summary>After <see cref="FrameReadStatus.TooLarge"/> or <see cref="FrameReadStatus.Invalid"/>: what was wrong, for the log and the grain's <c>CloseRequested</c>.</summary>
    string? Problem { get; }
}

/// <summary>
/// Cuts a byte stream into frames as a <see cref="FrameFormat"/> says. One per connection: for delimited framing it
/// remembers how far it has already searched, so a frame trickling in byte by byte is scanned once, not once per byte.
/// </summary>
public sealed class FrameDecoder : IFrameDecoder
{
    private static readonly byte[] LineDelimiter = "\n"u8.ToArray();

    private readonly FrameFormat _format;
    private readonly byte[] _delimiter;
    private long _searched;

    /// <summary>Creates a decoder for <paramref name="format"/>.</summary>
    /// <exception cref="ArgumentException">The format is raw, or its settings are invalid.</exception>
    public FrameDecoder(FrameFormat format)
    {
        ArgumentNullException.ThrowIfNull(format);
        FrameCodec.Validate(format);
        if (format.Kind is FramingKind.Raw or FramingKind.Custom)
        {
            throw new ArgumentException($"{format.Kind} framing has no built-in decoder.", nameof(format));
        }

        _format = format;
        _delimiter = format.Kind == FramingKind.Line ? LineDelimiter : format.Delimiter ?? [];
    }

    /// <summary>The length a too-large frame announced (its prefix's value), or -1 when no delimiter was found in time.</summary>
    public long AnnouncedLength { get; private set; } = -1;

    /// <inheritdoc />
    public string? Problem { get; private set; }

    /// <summary>
    /// Looks for one frame at the start of <paramref name="buffer"/>. On <see cref="FrameReadStatus.Frame"/>,
    /// <paramref name="frame"/> is its body and <paramref name="consumed"/> the bytes it took, header and delimiter included.
    /// </summary>
    public FrameReadStatus TryRead(ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> frame, out long consumed)
    {
        frame = default;
        consumed = 0;
        return _format.Kind == FramingKind.LengthPrefixed
            ? TryReadLengthPrefixed(buffer, ref frame, ref consumed)
            : TryReadDelimited(buffer, ref frame, ref consumed);
    }

    private FrameReadStatus TryReadLengthPrefixed(ReadOnlySequence<byte> buffer, ref ReadOnlySequence<byte> frame, ref long consumed)
    {
        var prefixLength = _format.PrefixLength;
        if (buffer.Length < prefixLength)
        {
            return FrameReadStatus.NeedMoreData;
        }

        Span<byte> prefix = stackalloc byte[8];
        buffer.Slice(0, prefixLength).CopyTo(prefix);
        var value = FrameCodec.ReadPrefix(prefix[..prefixLength], _format.BigEndian);

        // Decided on the prefix alone, before a byte of the body is buffered.
        if (value > (ulong)int.MaxValue)
        {
            AnnouncedLength = value > long.MaxValue ? long.MaxValue : (long)value;
            Problem = $"A frame of {value} bytes exceeds the maximum of {_format.MaxFrameSize} bytes.";
            return FrameReadStatus.TooLarge;
        }

        var bodyLength = (long)value + _format.LengthAdjustment;
        if (bodyLength < 0)
        {
            AnnouncedLength = (long)value;
            Problem = $"A length prefix of {value} adjusts to a negative frame length.";
            return FrameReadStatus.Invalid;
        }

        if (bodyLength > _format.MaxFrameSize)
        {
            AnnouncedLength = bodyLength;
            Problem = $"A frame of {bodyLength} bytes exceeds the maximum of {_format.MaxFrameSize} bytes.";
            return FrameReadStatus.TooLarge;
        }

        if (buffer.Length < prefixLength + bodyLength)
        {
            return FrameReadStatus.NeedMoreData;
        }

        frame = buffer.Slice(prefixLength, bodyLength);
        consumed = prefixLength + bodyLength;
        return FrameReadStatus.Frame;
    }

    private FrameReadStatus TryReadDelimited(ReadOnlySequence<byte> buffer, ref ReadOnlySequence<byte> frame, ref long consumed)
    {
        // A delimiter may straddle what was searched and what is new; never look past the largest allowed frame.
        var limit = Math.Min(buffer.Length, (long)_format.MaxFrameSize + _delimiter.Length);
        var start = Math.Max(0, _searched - (_delimiter.Length - 1));
        var reader = new SequenceReader<byte>(buffer.Slice(start, limit - start));
        if (!reader.TryReadTo(out ReadOnlySequence<byte> _, _delimiter, advancePastDelimiter: true))
        {
            _searched = limit;
            if (limit == (long)_format.MaxFrameSize + _delimiter.Length)
            {
                Problem = $"No delimiter within the maximum frame size of {_format.MaxFrameSize} bytes.";
                return FrameReadStatus.TooLarge;
            }

            return FrameReadStatus.NeedMoreData;
        }

        _searched = 0;
        consumed = start + reader.Consumed;
        var bodyLength = consumed - _delimiter.Length;
        if (_format.Kind == FramingKind.Line && bodyLength > 0 && buffer.Slice(bodyLength - 1, 1).FirstSpan[0] == (byte)'\r')
        {
            bodyLength--;
        }

        if (bodyLength > _format.MaxFrameSize)
        {
            Problem = $"A frame of {bodyLength} bytes exceeds the maximum of {_format.MaxFrameSize} bytes.";
            return FrameReadStatus.TooLarge;
        }

        frame = buffer.Slice(0, bodyLength);
        return FrameReadStatus.Frame;
    }
}

/// <summary>Frame headers and validation shared by the gateway's decoder and the grain's <c>WriteFrame</c>.</summary>
public static class FrameCodec
{
    /// <summary>Reads an unsigned integer prefix.</summary>
    public static ulong ReadPrefix(ReadOnlySpan<byte> prefix, bool bigEndian)
    {
        ulong value = 0;
        for (var i = 0; i < prefix.Length; i++)
        {
            value = (value << 8) | (bigEndian ? prefix[i] : prefix[prefix.Length - 1 - i]);
        }

        return value;
    }

    /// <summary>Writes <paramref name="value"/> as an unsigned integer prefix filling <paramref name="prefix"/>.</summary>
    public static void WritePrefix(Span<byte> prefix, ulong value, bool bigEndian)
    {
        for (var i = prefix.Length - 1; i >= 0; i--)
        {
            prefix[bigEndian ? i : prefix.Length - 1 - i] = (byte)value;
            value >>= 8;
        }
    }

    /// <summary>Checks a format's settings; throws <see cref="ArgumentException"/> naming what is wrong.</summary>
    public static void Validate(FrameFormat format)
    {
        var problems = Problems(format).ToList();
        if (problems.Count > 0)
        {
            throw new ArgumentException(string.Join(" ", problems), nameof(format));
        }
    }

    /// <summary>Every problem with a format's settings, each with its fix.</summary>
    public static IEnumerable<string> Problems(FrameFormat format)
    {
        if (format.MaxFrameSize < 0)
        {
            yield return $"MaxFrameSize {format.MaxFrameSize} must not be negative (default 1 MiB).";
        }

        if (format.Kind == FramingKind.LengthPrefixed && format.PrefixLength is not (1 or 2 or 4 or 8))
        {
            yield return $"PrefixLength {format.PrefixLength} must be 1, 2, 4 or 8.";
        }

        if (format.Kind == FramingKind.Delimited && format.Delimiter is not { Length: > 0 })
        {
            yield return "Delimited framing needs a Delimiter of at least one byte.";
        }
    }

    /// <summary>
    /// Writes one frame of <paramref name="payload"/> through <paramref name="write"/> (header then body, or body then
    /// delimiter).
    /// </summary>
    /// <exception cref="ArgumentException">
    /// The payload does not fit the prefix, or contains the delimiter (the peer would cut it in two).
    /// </exception>
    public static void Encode(FrameFormat format, ReadOnlySpan<byte> payload, SpanWriter write)
    {
        switch (format.Kind)
        {
            case FramingKind.LengthPrefixed:
                var value = (long)payload.Length - format.LengthAdjustment;
                if (value < 0 || (format.PrefixLength < 8 && value >= 1L << (8 * format.PrefixLength)))
                {
                    throw new ArgumentException($"A frame of {payload.Length} bytes does not fit a {format.PrefixLength}-byte length prefix.", nameof(payload));
                }

                Span<byte> prefix = stackalloc byte[8];
                WritePrefix(prefix[..format.PrefixLength], (ulong)value, format.BigEndian);
                write(prefix[..format.PrefixLength]);
                write(payload);
                break;
            case FramingKind.Line:
                if (payload.Contains((byte)'\n'))
                {
                    throw new ArgumentException("A line frame cannot contain '\\n'.", nameof(payload));
                }

                write(payload);
                write("\n"u8);
                break;
            case FramingKind.Delimited:
                if (payload.IndexOf(format.Delimiter) >= 0)
                {
                    throw new ArgumentException("A frame cannot contain its delimiter.", nameof(payload));
                }

                write(payload);
                write(format.Delimiter);
                break;
            case FramingKind.Custom:
                throw new InvalidOperationException("A custom framing has no built-in encoder; write each encoded frame with Write.");
            default:
                throw new InvalidOperationException("The connection is not framed; use Write.");
        }
    }

    /// <summary>Receives the pieces of an encoded frame.</summary>
    public delegate void SpanWriter(ReadOnlySpan<byte> bytes);
}
