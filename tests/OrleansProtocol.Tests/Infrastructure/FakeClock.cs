using Microsoft.Extensions.Time.Testing;
using OrleansProtocol.Gateway;

namespace OrleansProtocol.Tests.Infrastructure;

/// <summary>Moving a <see cref="FakeTimeProvider"/> under a live gateway.</summary>
public static class FakeClock
{
    /// <summary>
    /// Moves <paramref name="time"/> by <paramref name="by"/>, then runs <paramref name="server"/>'s clock checks at the
    /// new time, as its next heartbeat would: what that time ends is under way when this returns (await its event).
    /// </summary>
    public static void Advance(this FakeTimeProvider time, TimeSpan by, ProtocolServer server)
    {
        time.Advance(by);
        server.CheckClocks();
    }
}
