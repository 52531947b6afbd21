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

    /// <summary>
    /// Moves the server's clock a second at a time until <paramref name="until"/> completes. Stepping, not one jump: a
    /// deadline armed while the clock moves is due a step later, and a stall is a stall only once the kernel's buffers
    /// stop taking bytes between two checks.
    /// </summary>
    public static async Task AdvanceUntilAsync(this FakeTimeProvider time, ProtocolServer server, Task until)
    {
        while (!until.IsCompleted)
        {
            time.Advance(TimeSpan.FromSeconds(1), server);
            await Task.WhenAny(until, Task.Delay(20));
        }

        await until;
    }
}
