# frozen_string_literal: true

require 'socket'

module Frontend
  # This process's request counters, shown on the page and in /json ("server"). Thread-safe.
  #   requests   completed requests on PORT (the health listener's are not counted)
  #   errors     answers >= 500 from this service, and failures Puma caught outside the app
  #   refused    requests Puma turned away before the app saw them (malformed: 400/501)
  #   in_flight  requests on PORT being served now
  # Each error and refusal is also logged as one JSON line (RequestLog, PumaEvents).
  class ServerStats
    # /proc/net/netstat: the kernel's count of connections dropped because a listen queue was
    # full. It covers the whole network namespace (in a pod: this process and its Envoy).
    NETSTAT = '/proc/net/netstat'

    def initialize(capacity: {}, netstat: NETSTAT)
      @lock = Mutex.new
      @requests = @errors = @refused = @in_flight = @forced = 0
      @capacity = capacity
      @netstat = netstat
      @listener = nil
      @overflows_at_start = ServerStats.listen_overflows(netstat)
    end

    # The application's listening socket, for its accept-queue depth.
    attr_writer :listener

    def request_started
      @lock.synchronize { @in_flight += 1 }
    end

    def request_finished(status)
      @lock.synchronize do
        @in_flight -= 1
        @requests += 1
        @errors += 1 if status >= 500
      end
    end

    def error!
      @lock.synchronize { @errors += 1 }
    end

    def refused!
      @lock.synchronize { @refused += 1 }
    end

    # A request cut off because the drain time ran out (also counted as an error).
    def forced!
      @lock.synchronize { @forced += 1 }
    end

    attr_reader :forced

    def counts
      @lock.synchronize { { requests: @requests, errors: @errors, refused: @refused, in_flight: @in_flight } }
    end

    def snapshot
      now = ServerStats.listen_overflows(@netstat)
      overflows = now && @overflows_at_start ? now - @overflows_at_start : nil
      counts.merge(capacity: @capacity, listen_queue: ServerStats.listen_queue(@listener),
                   netns_listen_overflows: overflows)
    end

    # {queued:, limit:} of a listening TCP socket (Linux TCP_INFO: tcpi_unacked is the accept
    # queue's length, tcpi_sacked its limit), or nil where that cannot be read.
    def self.listen_queue(socket)
      return nil unless socket && Socket.const_defined?(:TCP_INFO)

      fields = socket.getsockopt(Socket::IPPROTO_TCP, Socket::TCP_INFO).data.unpack('C8L6')
      { queued: fields[12], limit: fields[13] }
    rescue IOError, SystemCallError, ArgumentError, TypeError
      nil
    end

    # TcpExt ListenOverflows from /proc/net/netstat, or nil (not Linux, not readable).
    def self.listen_overflows(path = NETSTAT)
      names, values = File.readlines(path).select { |line| line.start_with?('TcpExt:') }.map(&:split)
      return nil unless names && values

      index = names.index('ListenOverflows')
      index && values[index]&.to_i
    rescue SystemCallError, IOError
      nil
    end
  end
end
