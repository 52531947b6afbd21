using OrleansProtocol.Samples.Resp;

namespace OrleansProtocol.Gateway.Hosting;

/// <summary>
/// The RESP sample's listener settings: its own frame decoder, a command up to
/// <see cref="RespLimits.MaxCommandLength"/>, and a subscriber closed once <see cref="RespLimits.MaxSubscriberBacklog"/>
/// of channel messages wait for it. Kept in the host, not the samples: a protocol is written against the
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
        listener.MaxGroupBacklog = RespLimits.MaxSubscriberBacklog;
    }
}
