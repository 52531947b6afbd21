using System.Buffers;
using System.Buffers.Text;
using OrleansProtocol.Framing;

namespace OrleansProtocol.Samples.Resp;

/// <summary>
/// Cuts a RESP2 request stream into whole commands, as Redis reads its query buffer: an array of bulk strings
/// (<c>*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n</c>) or an inline command line (<c>PING\r\n</c>). Each frame is one command's
/// bytes (the array with its headers; the inline line without its line end), parsed again by <see cref="RespCommand"/>.
/// </summary>
/// <remarks>
/// Lengths are checked from the headers, before a body is buffered: a bulk length over
/// <see cref="RespLimits.MaxBulkLength"/> or a command over the listener's <see cref="FrameFormat.MaxFrameSize"/> is
/// <see cref="FrameReadStatus.TooLarge"/>, anything Redis calls a protocol error is <see cref="FrameReadStatus.Invalid"/>;
/// <see cref="Problem"/> then holds Redis' own error text. A command trickling in is validated once: the decoder
/// remembers how far into it it got.
/// </remarks>
public sealed class RespFrameDecoder(FrameFormat format) : IFrameDecoder
{
    private readonly long _maxCommand = format.MaxFrameSize;

    // How far into the current command the decoder has validated, the bulk strings it still expects (-1: the array's
    // header line is not read yet), and how far the line being looked at was searched for its end.
    private long _validated;
    private long _argumentsLeft = -1;
    private long _lineSearched;

    /// <inheritdoc />
    public string? Problem { get; private set; }

    /// <inheritdoc />
    public FrameReadStatus TryRead(ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> frame, out long consumed)
    {
        frame = default;
        consumed = 0;
        if (buffer.IsEmpty)
        {
            return FrameReadStatus.NeedMoreData;
        }

        var status = ByteAt(buffer, 0) == (byte)'*' ? ReadArray(buffer, out consumed, out frame) : ReadInline(buffer, out consumed, out frame);
        if (status == FrameReadStatus.Frame)
        {
            (_validated, _argumentsLeft, _lineSearched) = (0, -1, 0);
        }

        return status;
    }

    private FrameReadStatus ReadInline(ReadOnlySequence<byte> buffer, out long consumed, out ReadOnlySequence<byte> frame)
    {
        consumed = 0;
        frame = default;
        var limit = Math.Min(buffer.Length, RespLimits.MaxInlineLength + 1L);
        var reader = new SequenceReader<byte>(buffer.Slice(_lineSearched, limit - _lineSearched));
        if (!reader.TryAdvanceTo((byte)'\n', advancePastDelimiter: false))
        {
            _lineSearched = limit;
            return limit > RespLimits.MaxInlineLength ? Fail(FrameReadStatus.Invalid, "Protocol error: too big inline request") : FrameReadStatus.NeedMoreData;
        }

        var newline = _lineSearched + reader.Consumed;
        consumed = newline + 1;
        var end = newline > 0 && ByteAt(buffer, newline - 1) == (byte)'\r' ? newline - 1 : newline;
        frame = buffer.Slice(0, end);

        // Quotes are checked here so that unbalanced ones close the connection after the error, as in Redis.
        var line = frame.IsSingleSegment ? frame.FirstSpan : frame.ToArray();
        if (line.IndexOfAny((byte)'"', (byte)'\'') >= 0 && !RespCommand.TrySplitInline(line, null))
        {
            (consumed, frame) = (0, default);
            return Fail(FrameReadStatus.Invalid, "Protocol error: unbalanced quotes in request");
        }

        return FrameReadStatus.Frame;
    }

    private FrameReadStatus ReadArray(ReadOnlySequence<byte> buffer, out long consumed, out ReadOnlySequence<byte> frame)
    {
        consumed = 0;
        frame = default;
        if (_argumentsLeft < 0)
        {
            var status = ReadLength(buffer, 0, RespLimits.MaxArguments, "Protocol error: invalid multibulk length", out var count, out var next);
            if (status != FrameReadStatus.Frame)
            {
                return status == FrameReadStatus.TooLarge ? Fail(FrameReadStatus.Invalid, Problem!) : status;
            }

            // Each bulk string takes at least 6 bytes ("$0\r\n\r\n"): a count that cannot fit is refused now.
            if (next + (6 * Math.Max(count, 0)) > _maxCommand)
            {
                return Fail(FrameReadStatus.TooLarge, $"Protocol error: a command of {count} arguments is over the maximum of {_maxCommand} bytes");
            }

            (_validated, _argumentsLeft) = (next, Math.Max(count, 0));
        }

        while (_argumentsLeft > 0)
        {
            if (_validated >= buffer.Length)
            {
                return FrameReadStatus.NeedMoreData;
            }

            var marker = ByteAt(buffer, _validated);
            if (marker != (byte)'$')
            {
                return Fail(FrameReadStatus.Invalid, $"Protocol error: expected '$', got '{(char)marker}'");
            }

            var status = ReadLength(buffer, _validated, RespLimits.MaxBulkLength, "Protocol error: invalid bulk length", out var length, out var body);
            if (status != FrameReadStatus.Frame)
            {
                return status;
            }

            if (length < 0)
            {
                return Fail(FrameReadStatus.Invalid, "Protocol error: invalid bulk length");
            }

            var end = body + length + 2;
            if (end > _maxCommand)
            {
                return Fail(FrameReadStatus.TooLarge, $"Protocol error: a command of at least {end} bytes is over the maximum of {_maxCommand} bytes");
            }

            if (end > buffer.Length)
            {
                return FrameReadStatus.NeedMoreData;
            }

            if (ByteAt(buffer, end - 2) != (byte)'\r' || ByteAt(buffer, end - 1) != (byte)'\n')
            {
                return Fail(FrameReadStatus.Invalid, "Protocol error: expected CRLF after a bulk string");
            }

            (_validated, _argumentsLeft) = (end, _argumentsLeft - 1);
        }

        consumed = _validated;
        frame = buffer.Slice(0, consumed);
        return FrameReadStatus.Frame;
    }

    /// <summary>
    /// Reads the integer on the header line at <paramref name="start"/> (after its <c>*</c> or <c>$</c>): Frame with the
    /// value and where the next line starts, NeedMoreData, Invalid, or TooLarge when over <paramref name="max"/>.
    /// </summary>
    private FrameReadStatus ReadLength(ReadOnlySequence<byte> buffer, long start, long max, string invalid, out long value, out long next)
    {
        value = 0;
        next = 0;
        var from = Math.Max(start + 1, _lineSearched);
        var limit = Math.Min(buffer.Length, start + 1 + RespLimits.MaxHeaderLine);
        var reader = new SequenceReader<byte>(buffer.Slice(from, Math.Max(0, limit - from)));
        if (!reader.TryAdvanceTo((byte)'\r', advancePastDelimiter: false))
        {
            _lineSearched = limit;
            return limit - start - 1 >= RespLimits.MaxHeaderLine ? Fail(FrameReadStatus.Invalid, invalid) : FrameReadStatus.NeedMoreData;
        }

        var cr = from + reader.Consumed;
        if (cr + 1 >= buffer.Length)
        {
            _lineSearched = cr;
            return FrameReadStatus.NeedMoreData;
        }

        _lineSearched = 0;
        Span<byte> text = stackalloc byte[RespLimits.MaxHeaderLine + 1];
        text = text[..(int)(cr - start)];
        buffer.Slice(start, cr - start).CopyTo(text);
        if (text.Length < 2 || ByteAt(buffer, cr + 1) != (byte)'\n'
            || !Utf8Parser.TryParse(text[1..], out value, out var used) || used != text.Length - 1)
        {
            return Fail(FrameReadStatus.Invalid, invalid);
        }

        if (value > max)
        {
            return Fail(FrameReadStatus.TooLarge, invalid);
        }

        next = cr + 2;
        return FrameReadStatus.Frame;
    }

    private static byte ByteAt(ReadOnlySequence<byte> buffer, long index)
    {
        var reader = new SequenceReader<byte>(buffer.Slice(index));
        reader.TryPeek(out var value);
        return value;
    }

    private FrameReadStatus Fail(FrameReadStatus status, string problem)
    {
        Problem = problem;
        return status;
    }
}

/// <summary>The RESP sample's bounds, each the counterpart of a Redis setting.</summary>
public static class RespLimits
{
    /// <summary>
    /// The largest bulk string (a key or a value): 32 MiB (Redis' <c>proto-max-bulk-len</c> is 512 MB; a bulk string
    /// is buffered whole in the gateway and travels in one grain call, so the sample keeps it smaller).
    /// </summary>
    public const int MaxBulkLength = 32 * 1024 * 1024;

    /// <summary>The largest command, all its bulk strings and headers together: 64 MiB (the listener's <c>MaxFrameSize</c>).</summary>
    public const int MaxCommandLength = 64 * 1024 * 1024;

    /// <summary>The most arguments in one command: 1,048,576 (Redis' limit for a client before authentication).</summary>
    public const int MaxArguments = 1024 * 1024;

    /// <summary>The longest inline command line: 64 KiB (Redis' <c>PROTO_INLINE_MAX_SIZE</c>).</summary>
    public const int MaxInlineLength = 64 * 1024;

    /// <summary>The longest <c>*N</c> or <c>$N</c> header line: a 64-bit integer with its sign.</summary>
    public const int MaxHeaderLine = 21;

    /// <summary>
    /// How far behind a subscriber may fall before it is disconnected: 32 MiB of channel messages waiting for its peer
    /// (Redis' <c>client-output-buffer-limit pubsub</c> hard limit); the host sets it as the listener's
    /// <c>MaxGroupBacklog</c>.
    /// </summary>
    public const int MaxSubscriberBacklog = 32 * 1024 * 1024;
}
