namespace OrleansProtocol.Tests.TestGrains;

/// <summary>Writes "bye" and closes as soon as the connection is made: the flush-before-close check.</summary>
public sealed class ByeGrain : ProtocolGrain
{
    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        transport.Write("bye"u8);
        transport.Close();
        return Task.CompletedTask;
    }
}

/// <summary>
/// Echoes, and keeps the connection half-open when the peer half-closes: it closes from a timer afterwards, so the
/// close travels through the observer behind every echoed byte.
/// </summary>
public sealed class HalfOpenEchoGrain : ProtocolGrain
{
    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        Transport.Write(data.Span);
        return Task.CompletedTask;
    }

    protected override Task<bool> EofReceived()
    {
        IGrainTimer? timer = null;
        timer = this.RegisterGrainTimer(() =>
        {
            timer!.Dispose();
            Transport.Close();
            return Task.CompletedTask;
        }, new GrainTimerCreationOptions(TimeSpan.Zero, Timeout.InfiniteTimeSpan));
        return Task.FromResult(true);
    }
}

/// <summary>Writes 32 MiB (more than the kernel takes at once), then hands the connection to <see cref="ScriptGrain"/>.</summary>
public sealed class WriteThenUpgradeGrain : ProtocolGrain
{
    public const int Written = 32 * 1024 * 1024;

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        transport.Write(new byte[Written]);
        transport.SetProtocol<ScriptGrain>();
        return Task.CompletedTask;
    }
}

/// <summary>Echoes lines; when the server closes the connection (a clock, a limit, a drain), says why first.</summary>
public sealed class GoodbyeGrain(Infrastructure.CallbackRecorder recorder) : ProtocolGrain
{
    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        recorder.For(transport.Connection).Add("CM");
        return Task.CompletedTask;
    }

    protected override Task DataReceived(ReadOnlyMemory<byte> data)
    {
        Transport.Write(data.Span);
        return Task.CompletedTask;
    }

    protected override Task CloseRequested(ConnectionCloseReason reason, string? message)
    {
        recorder.For(Transport.Connection).Add($"CR {reason}");
        Transport.Write(System.Text.Encoding.UTF8.GetBytes($"-ERR closing: {reason}\r\n"));
        return Task.CompletedTask;
    }

    protected override Task ConnectionLost(Exception? exception)
    {
        recorder.For(Transport.Connection).Lost(exception, CloseReason);
        return Task.CompletedTask;
    }
}
