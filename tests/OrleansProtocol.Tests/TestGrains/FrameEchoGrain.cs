using OrleansProtocol.Tests.Infrastructure;

namespace OrleansProtocol.Tests.TestGrains;

/// <summary>Echoes every frame back as a frame, recording how many calls brought how many frames.</summary>
public sealed class FrameEchoGrain(CallbackRecorder recorder) : ProtocolGrain
{
    private ConnectionRecord? _record;

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        _record = recorder.For(transport.Connection);
        _record.Add("CM");
        return Task.CompletedTask;
    }

    protected override Task FrameReceived(ReadOnlyMemory<byte> frame)
    {
        _record!.Add("FR");
        Transport.WriteFrame(frame.Span);
        return Task.CompletedTask;
    }

    protected override Task ConnectionLost(Exception? exception)
    {
        _record!.Lost(exception, CloseReason);
        return Task.CompletedTask;
    }
}

/// <summary>On a listener with its own decoder (no built-in encoder): echoes each frame's bytes with Write.</summary>
public sealed class RawFrameEchoGrain(CallbackRecorder recorder) : ProtocolGrain
{
    private ConnectionRecord? _record;

    protected override Task ConnectionMade(ProtocolTransport transport)
    {
        _record = recorder.For(transport.Connection);
        _record.Add("CM");
        return Task.CompletedTask;
    }

    protected override Task FrameReceived(ReadOnlyMemory<byte> frame)
    {
        _record!.Add("FR");
        Transport.Write(frame.Span);
        return Task.CompletedTask;
    }

    protected override Task ConnectionLost(Exception? exception)
    {
        _record!.Lost(exception, CloseReason);
        return Task.CompletedTask;
    }
}
