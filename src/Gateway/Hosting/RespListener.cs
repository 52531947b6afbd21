using OrleansProtocol.Samples.Resp;

namespace OrleansProtocol.Gateway.Hosting;

/// <summary>
/// The RESP sample's listener settings: its own frame decoder, and a command up to
/// <see cref="RespLimits.MaxCommandLength"/>. Kept in the host, not the samples: a protocol is written against the
/// Grains library alone, and its listener is the host's to configure.
/// </summary>
public static class RespListener
{
    /// <summary>Configures <paramref name="listener"/> for RESP.</summary>
    public static void Configure(ProtocolListenerOptions listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        listener.Framing.Decoder = format => new RespFrameDecoder(format);
        listener.Framing.MaxFrameSize = RespLimits.MaxCommandLength;
    }
}
