using Microsoft.Extensions.Logging;

namespace OrleansProtocol.Framing;

/// <summary>
/// A protocol of length-prefixed strings, after Twisted's <c>IntNStringReceiver</c>: each string is an unsigned
/// integer of <see cref="PrefixLength"/> bytes giving its length, then that many bytes.
/// Override <see cref="StringReceived"/>; send with <see cref="SendString"/>.
/// </summary>
/// <remarks>
/// A length over <see cref="MaxLength"/> is refused as soon as its prefix arrives, before any of the string is
/// buffered: <see cref="LengthLimitExceeded"/> closes the connection with <see cref="ConnectionCloseReason.FrameTooLarge"/>.
/// The grain buffers at most one incomplete string, so its memory is bounded by <see cref="MaxLength"/>.
/// </remarks>
public abstract class IntNStringReceiverGrain : ProtocolGrain
{
    private byte[] _buffer = [];
    private int _count;
    private bool _refused;

    /// <summary>Bytes in the length prefix: 1, 2, 4 or 8. Twisted's <c>Int32StringReceiver</c> uses 4.</summary>
    protected virtual int PrefixLength => 4;

    /// <summary>True for a little-endian prefix (struct format <c>&lt;L</c>); false for network order (<c>!L</c>).</summary>
    protected virtual bool LittleEndian => false;

    /// <summary>The longest string accepted. Defaults to 99,999 bytes, Twisted's <c>MAX_LENGTH</c>.</summary>
    protected virtual int MaxLength => 99_999;

    /// <summary>A whole string arrived.</summary>
    protected abstract Task StringReceived(ReadOnlyMemory<byte> data);

    /// <summary>A prefix announced <paramref name="length"/> bytes, more than <see cref="MaxLength"/>. Closes the connection.</summary>
    protected virtual Task LengthLimitExceeded(ulong length)
    {
        var message = $"A string of {length} bytes exceeds the maximum of {MaxLength} bytes.";
        LogSampled(LogLevel.Warning, "frame_too_large", message + " Closing.");
        Transport.Close(ConnectionCloseReason.FrameTooLarge, message);
        return Task.CompletedTask;
    }

    /// <summary>Writes <paramref name="data"/> preceded by its length.</summary>
    /// <exception cref="ArgumentOutOfRangeException">The length does not fit in the prefix.</exception>
    protected void SendString(ReadOnlySpan<byte> data)
    {
        var prefixLength = PrefixLength;
        if (prefixLength < 8 && (ulong)data.Length >= 1UL << (8 * prefixLength))
        {
            throw new ArgumentOutOfRangeException(nameof(data), $"{data.Length} bytes do not fit a {prefixLength}-byte length prefix.");
        }

        Span<byte> prefix = stackalloc byte[8];
        FrameCodec.WritePrefix(prefix[..prefixLength], (ulong)data.Length, !LittleEndian);
        Transport.Write(prefix[..prefixLength]);
        Transport.Write(data);
    }

    /// <inheritdoc />
    protected sealed override async Task DataReceived(ReadOnlyMemory<byte> data)
    {
        if (_refused)
        {
            return;
        }

        Append(data.Span);
        var prefixLength = PrefixLength;
        var offset = 0;
        while (!Transport.IsClosing && _count - offset >= prefixLength)
        {
            var length = FrameCodec.ReadPrefix(_buffer.AsSpan(offset, prefixLength), !LittleEndian);
            if (length > (ulong)MaxLength)
            {
                _refused = true;
                _count = 0;
                await LengthLimitExceeded(length);
                return;
            }

            var end = offset + prefixLength + (int)length;
            if (_count < end)
            {
                break;
            }

            // A copy the protocol may keep: the receive buffer is reused.
            var message = _buffer.AsMemory(offset + prefixLength, (int)length).ToArray();
            offset = end;
            await StringReceived(message);
        }

        // Keep only the incomplete tail.
        _buffer.AsSpan(offset, _count - offset).CopyTo(_buffer);
        _count -= offset;
    }

    private void Append(ReadOnlySpan<byte> data)
    {
        if (_buffer.Length - _count < data.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_count + data.Length, _buffer.Length * 2));
        }

        data.CopyTo(_buffer.AsSpan(_count));
        _count += data.Length;
    }
}
