-- An acknowledgement spans a whole meter session (kernel/sequence.py ACK_WINDOW, now
-- {ack_window} numbers, was 4,096): a reading older than the 4,096 up to a meter's newest could
-- be sent again for ever and never be acknowledged, so a CGM's 30-day backlog (8,640 readings)
-- never completed. Same function as 0013_device_acks.sql, with the window in force; rows
-- already in device_acks keep what they hold and grow into the wider window.
create or replace function ack_window(newest integer) returns int4multirange language sql
    immutable as $$
    select case when newest >= {ack_window} - 1
        then int4multirange(int4range(newest - ({ack_window} - 1), newest, '[]'))
        else int4multirange(int4range(0, newest, '[]'),
                            int4range({seq_modulo} - ({ack_window} - 1 - newest),
                                      {seq_modulo} - 1, '[]'))
    end
$$;
